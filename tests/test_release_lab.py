"""Releases on the lab: zero-downtime deploy, failed deploys, rollback tied to the database,
the ledger, and concurrent or killed runs.

One real Medusa tenant on dev is shared by the module; the tests run in file order, each
starting from the release the previous one left serving. A client sends requests through
nginx without pause during every deploy and rollback and must see no failure.
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from omni.inventory.models import Host
from omni.probe import ProbeError, https_get
from tests import tenant_lab as tl

pytestmark = pytest.mark.lab


class Hammer:
    """Requests ``GET /lab/release`` through nginx without pause while in the ``with``."""

    def __init__(self, host: Host, domain: str) -> None:
        self.host, self.domain = host, domain
        self.failures: list[str] = []
        self.releases: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        address = self.host.nginx.listen_address or self.host.address
        while not self._stop.is_set():
            try:
                answer = https_get(address, self.host.nginx.https_port, self.domain,
                                   "/lab/release", self.host.health.ca_bundle, timeout=10)
            except ProbeError as exc:
                self.failures.append(str(exc))
                continue
            if answer.status != 200:
                self.failures.append(f"HTTP {answer.status}")
                continue
            release = json.loads(answer.body)["release"]
            if not self.releases or self.releases[-1] != release:
                self.releases.append(release)

    def __enter__(self) -> Hammer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def switched(self, old: str, new: str) -> bool:
        """Served ``old`` first and ``new`` last, nothing else. While nginx's old workers
        finish after a reload, answers from both may interleave for a moment."""
        return (bool(self.releases) and self.releases[0] == old
                and self.releases[-1] == new and set(self.releases) == {old, new})


@pytest.fixture(scope="module")
def tenant(tmp_path_factory: pytest.TempPathFactory, dev_host: Host) -> Iterator[
    tuple[Path, str]
]:
    inventory = tl.copy_lab_inventory(tmp_path_factory.mktemp("releases"))
    slug = tl.unique_slug("rel")
    run = tl.omni(inventory, "tenant", "create", slug, "--host", "dev", "--domain",
                  f"{slug}.dev.lab.test", "--image", "omni-lab/medusa:v1")
    assert run.code == 0, run.stderr
    try:
        yield inventory, slug
    finally:
        tl.omni(inventory, "tenant", "destroy", slug, "--yes")


def _domain(slug: str) -> str:
    return f"{slug}.dev.lab.test"


def _image(inventory: Path, slug: str) -> str:
    return str(yaml.safe_load((inventory / "tenants" / f"{slug}.yaml").read_text())["image"])


def _sql(session: Any, slug: str, query: str) -> list[tuple[Any, ...]]:
    with session.postgres(f"tenant_{slug.replace('-', '_')}") as conn:
        cursor = conn.execute(query)
        return list(cursor.fetchall()) if cursor.description else []


def _tables(session: Any, slug: str) -> set[str]:
    rows = _sql(session, slug, "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = 'public'")
    return {str(r[0]) for r in rows}


def _mine(snapshot: dict[str, Any], slug: str) -> dict[str, Any]:
    """The part of a host snapshot that belongs to this tenant (other tests may be changing
    other tenants on the same host meanwhile)."""
    db = f"tenant_{slug.replace('-', '_')}"
    return {
        "containers": [c for c in snapshot["containers"] if slug in c[0]],
        "roles": [r for r in snapshot["roles"] if db in r],
        "databases": [d for d in snapshot["databases"] if db in d[0]],
        "files": {p: v for p, v in snapshot["files"].items() if slug in p},
    }


def _deploy(inventory: Path, slug: str, image: str, *extra: str) -> tl.Run:
    return tl.omni(inventory, "--json", "deploy", slug, "--image", image, *extra)


def test_dry_run_shows_the_change_and_leaves_the_host_as_it_was(
    tenant: tuple[Path, str], dev_host: Host, session: Callable[[Host], Any],
) -> None:
    inventory, slug = tenant
    s = session(dev_host)
    before = _mine(tl.host_snapshot(s), slug)
    run = _deploy(inventory, slug, "omni-lab/medusa:v2", "--dry-run")
    assert run.code == 0, run.stderr
    row = run.envelope()["data"]["tenants"][0]
    assert row["image"] == {"before": "omni-lab/medusa:v1", "after": "omni-lab/medusa:v2"}
    assert row["migrations"] == "run" and row["vhost_diff"]
    assert _mine(tl.host_snapshot(s), slug) == before
    assert _image(inventory, slug) == "omni-lab/medusa:v1"


def test_deploy_v2_switches_with_no_failed_request(tenant: tuple[Path, str],
                                                  dev_host: Host) -> None:
    inventory, slug = tenant
    plan = _deploy(inventory, slug, "omni-lab/medusa:v2", "--dry-run").envelope()
    fingerprint = plan["data"]["plan_fingerprint"]
    assert _deploy(inventory, slug, "omni-lab/medusa:v2", "--expect-plan", "0" * 16).code == 2
    with Hammer(dev_host, _domain(slug)) as hammer:
        run = _deploy(inventory, slug, "omni-lab/medusa:v2", "--expect-plan", fingerprint)
    assert run.code == 0, run.stderr
    assert hammer.failures == []
    assert hammer.switched("v1", "v2")
    assert _image(inventory, slug) == "omni-lab/medusa:v2"
    row = run.envelope()["data"]["tenants"][0]
    assert row["status"] == "ok" and row["dump"] and row["release"]
    converge = tl.omni(inventory, "--json", "tenant", "create", slug)
    assert converge.code == 0 and converge.envelope()["changed"] is False, converge.stdout


def test_broken_release_fails_its_gate_and_the_old_one_keeps_serving(
    tenant: tuple[Path, str], dev_host: Host, session: Callable[[Host], Any],
) -> None:
    inventory, slug = tenant
    with Hammer(dev_host, _domain(slug)) as hammer:
        run = _deploy(inventory, slug, "omni-lab/medusa:broken")
    assert run.code == 3, run.stderr
    assert hammer.failures == [] and hammer.releases == ["v2"]
    row = run.envelope()["data"]["tenants"][0]
    assert "health gate" in row["detail"] and "last logs" in row["detail"]
    assert _image(inventory, slug) == "omni-lab/medusa:v2"
    names = tl.tenant_containers(session(dev_host), slug)
    assert f"omni-{slug}-app-next" not in names


def test_failing_migration_restores_the_database_and_keeps_serving(
    tenant: tuple[Path, str], dev_host: Host, session: Callable[[Host], Any],
) -> None:
    inventory, slug = tenant
    s = session(dev_host)
    _sql(s, slug, "CREATE TABLE IF NOT EXISTS omni_test_marker (note text)")
    _sql(s, slug, "INSERT INTO omni_test_marker VALUES ('before the failed deploy')")
    tables = _tables(s, slug)
    s.close()
    with Hammer(dev_host, _domain(slug)) as hammer:
        run = _deploy(inventory, slug, "omni-lab/medusa:migrate-fails")
    assert run.code == 3, run.stderr
    assert hammer.failures == [] and hammer.releases == ["v2"]
    assert "database restored" in run.envelope()["data"]["tenants"][0]["detail"]
    assert _tables(s, slug) == tables and "lab_half" not in tables
    assert ("before the failed deploy",) in _sql(s, slug, "SELECT note FROM omni_test_marker")
    assert _image(inventory, slug) == "omni-lab/medusa:v2"


def test_rollback_with_restore_db_undoes_schema_and_data(
    tenant: tuple[Path, str], dev_host: Host, session: Callable[[Host], Any],
) -> None:
    inventory, slug = tenant
    s = session(dev_host)
    with Hammer(dev_host, _domain(slug)) as hammer:
        run = _deploy(inventory, slug, "omni-lab/medusa:v3")
    assert run.code == 0, run.stderr
    assert hammer.failures == [] and hammer.switched("v2", "v3")
    assert "lab_note" in _tables(s, slug)
    _sql(s, slug, "INSERT INTO omni_test_marker VALUES ('after v3')")
    s.close()
    refused = tl.omni(inventory, "rollback", slug)
    assert refused.code == 2 and "--restore-db" in refused.stderr
    with Hammer(dev_host, _domain(slug)) as hammer:
        run = tl.omni(inventory, "--json", "rollback", slug, "--restore-db")
    assert run.code == 0, run.stderr
    assert hammer.failures == [] and hammer.switched("v3", "v2")
    assert "lab_note" not in _tables(s, slug)
    notes = _sql(s, slug, "SELECT note FROM omni_test_marker")
    assert ("after v3",) not in notes and ("before the failed deploy",) in notes
    assert _image(inventory, slug) == "omni-lab/medusa:v2"


def test_rollback_without_restore_keeps_the_data(
    tenant: tuple[Path, str], dev_host: Host, session: Callable[[Host], Any],
) -> None:
    inventory, slug = tenant
    assert _deploy(inventory, slug, "omni-lab/medusa:v3").code == 0
    s = session(dev_host)
    _sql(s, slug, "INSERT INTO omni_test_marker VALUES ('kept')")
    s.close()
    with Hammer(dev_host, _domain(slug)) as hammer:
        run = tl.omni(inventory, "--json", "rollback", slug, "--no-restore-db")
    assert run.code == 0, run.stderr
    assert hammer.failures == [] and hammer.switched("v3", "v2")
    assert ("kept",) in _sql(s, slug, "SELECT note FROM omni_test_marker")
    ledger = tl.omni(inventory, "--json", "releases", slug).envelope()["data"]
    kinds = [(r["kind"], r["image"].rsplit(":", 1)[1], r["status"]) for r in ledger["releases"]]
    assert kinds[0] == ("create", "v1", "succeeded")
    assert ("deploy", "broken", "failed") in kinds
    assert ("deploy", "migrate-fails", "failed") in kinds
    assert kinds[-1] == ("rollback", "v2", "succeeded")
    assert all(r["who"] for r in ledger["releases"])


def test_two_deploys_at_once_one_runs_the_other_exits_4(tenant: tuple[Path, str]) -> None:
    inventory, slug = tenant
    first = tl.start_omni(inventory, "deploy", slug, "--image", "omni-lab/medusa:v1")
    refused: tl.Run | None = None
    try:
        def second_refused() -> tl.Run | None:
            run = tl.omni(inventory, "deploy", slug, "--image", "omni-lab/medusa:v1")
            return run if run.code == 4 else None

        with contextlib.suppress(AssertionError):
            refused = _eventually(second_refused, first)
    finally:
        _, err = first.communicate(timeout=600)
    if refused is None:  # on a loaded machine a later one may take the lock first
        assert first.returncode == 4, err
        assert "error[lock_held]" in err and slug in err
    else:
        assert "error[lock_held]" in refused.stderr and slug in refused.stderr
        assert first.returncode == 0, err
    assert _image(inventory, slug) == "omni-lab/medusa:v1"


def _eventually(probe: Callable[[], tl.Run | None], running: Any) -> tl.Run:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and running.poll() is None:
        found = probe()
        if found is not None:
            return found
    raise AssertionError("the second deploy never met the first one's lock")


def test_a_deploy_killed_half_way_is_finished_or_undone_by_the_next(
    tenant: tuple[Path, str], dev_host: Host, session: Callable[[Host], Any],
) -> None:
    inventory, slug = tenant
    s = session(dev_host)
    victim = tl.start_omni(inventory, "deploy", slug, "--image", "omni-lab/medusa:v2")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and victim.poll() is None:
        if s.docker().container(f"omni-{slug}-app-next") is not None:
            break
        time.sleep(0.2)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    s.close()
    with Hammer(dev_host, _domain(slug)) as hammer:
        run = _deploy(inventory, slug, "omni-lab/medusa:v2", "--wait", "60")
    assert run.code == 0, run.stderr
    assert hammer.failures == []
    assert _image(inventory, slug) == "omni-lab/medusa:v2"
    statuses = [r["status"] for r in tl.omni(inventory, "--json", "releases", slug)
                .envelope()["data"]["releases"]]
    assert "interrupted" not in statuses
    assert statuses[-1] in ("succeeded", "completed")
    assert f"omni-{slug}-app-next" not in tl.tenant_containers(s, slug)
