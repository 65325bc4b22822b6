"""A tenant whose app is not Medusa (``app_kind: plain``, the fleet benchmark's stand-in)
converges on a real host without migrations or onboarding, and passes every health check."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from omni.hosts.session import HostSession
from omni.inventory.loader import save_tenant
from omni.inventory.models import Host, Tenant
from tests.tenant_lab import copy_lab_inventory, omni, unique_slug

STANDIN = "omni-lab/standin:1"


@pytest.mark.lab
def test_plain_app_converges_without_migrations_or_onboarding(
    dev_host: Host, session: Callable[[Host], HostSession], tmp_path: Path
) -> None:
    inventory = copy_lab_inventory(tmp_path / "inventory")
    slug = unique_slug("plain")
    save_tenant(inventory, Tenant(slug=slug, host="dev", domains=[f"{slug}.dev.lab.test"],
                                  image=STANDIN, app_kind="plain"))
    try:
        first = omni(inventory, "--json", "tenant", "create", slug)
        assert first.code == 0, first.stderr
        steps = {s["resource"]: s for s in first.envelope()["steps"]}
        assert steps["medusa.migrations"]["verb"] == "noop"
        assert steps["medusa.app"]["verb"] == "create"
        assert "medusa.publishable_key" not in steps
        assert "medusa.admin" not in steps

        again = omni(inventory, "--json", "tenant", "create", slug)
        assert again.code == 0, again.stderr
        assert again.envelope()["changed"] is False

        health = omni(inventory, "--json", "health-check", slug)
        assert health.code == 0, health.stdout
        (row,) = health.envelope()["data"]["tenants"]
        assert {c["check"]: c["status"] for c in row["checks"]} == dict.fromkeys(
            ("app", "redis", "database", "upstream", "https", "certificate", "config"), "pass"
        )

        forced = omni(inventory, "--json", "migrate-all", "--tenant", slug, "--force")
        assert forced.code == 0, forced.stderr
        (row,) = forced.envelope()["data"]["tenants"]
        assert row["status"] == "skipped" and "no migrations" in row["detail"]
        # Nothing ran: no migrations recorded (even forced), no storefront key made.
        state = f"{dev_host.state_dir}/tenants/{slug}"
        host = session(dev_host)
        assert host.transport.read_file(f"{state}/migrated-image") is None
        assert host.transport.read_file(f"{state}/storefront.json") is None
        assert host.transport.read_file(f"{state}/secrets.json") is not None
    finally:
        # The stand-in never writes its database, and omni's final dump refuses a dump with
        # no entries: give it one table so the destroy's final backup reads back.
        db = "tenant_" + slug.replace("-", "_")
        with session(dev_host).postgres(db) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS plain_app_test (id int)")
        destroyed = omni(inventory, "tenant", "destroy", slug, "--yes")
        assert destroyed.code == 0, destroyed.stderr
