"""Hardening of a tenant's Postgres role on the lab: drift granted by hand is planned back,
and the role reaches its own database and nothing else."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from omni.errors import StepFailed
from omni.inventory.models import Host
from omni.tenant.secrets import TenantSecrets
from omni.tenant.secrets_store import secrets_path
from tests import tenant_lab as tl

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def tenant(tmp_path_factory: pytest.TempPathFactory, lab_hosts: Any) -> Iterator[
    tuple[Path, str]
]:
    inventory = tl.copy_lab_inventory(tmp_path_factory.mktemp("hardening"))
    slug = tl.unique_slug("hard")
    run = tl.omni(inventory, "tenant", "create", slug, "--host", "netcup", "--domain",
                  f"{slug}.netcup.lab.test", "--image", "omni-lab/medusa:v1")
    assert run.code == 0, run.stderr
    try:
        yield inventory, slug
    finally:
        tl.omni(inventory, "tenant", "destroy", slug, "--yes")


def _role(slug: str) -> str:
    return f"tenant_{slug.replace('-', '_')}"


def test_privileges_and_memberships_granted_by_hand_are_drift_planned_back(
    tenant: tuple[Path, str], netcup_host: Host, session: Callable[[Host], Any],
) -> None:
    inventory, slug = tenant
    role = _role(slug)
    s = session(netcup_host)
    with s.postgres() as conn:
        conn.execute(f"ALTER ROLE {role} SUPERUSER CREATEDB CREATEROLE REPLICATION BYPASSRLS")
        conn.execute(f"GRANT pg_read_all_data TO {role}")
    plan = tl.omni(inventory, "--json", "tenant", "create", slug, "--dry-run").envelope()
    step = next(s for s in plan["steps"] if s["resource"] == "postgres.role")
    changes = {c["field"]: c for c in step["changes"]}
    assert step["verb"] == "update"
    assert set(changes["privileges"]["before"].split(", ")) == {
        "SUPERUSER", "CREATEDB", "CREATEROLE", "REPLICATION", "BYPASSRLS"}
    assert changes["member_of"]["before"] == "pg_read_all_data"
    assert tl.omni(inventory, "tenant", "create", slug).code == 0
    with s.postgres() as conn:
        row = conn.execute(
            "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls "
            "FROM pg_authid WHERE rolname = %s", (role,)).fetchone()
        members = conn.execute(
            "SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member "
            "WHERE r.rolname = %s", (role,)).fetchone()
    assert row == (False, False, False, False, False)
    assert members == (0,)


def test_the_role_reaches_its_own_database_and_no_maintenance_database(
    tenant: tuple[Path, str], netcup_host: Host, session: Callable[[Host], Any],
) -> None:
    _, slug = tenant
    s = session(netcup_host)
    raw = s.transport.read_file(secrets_path(netcup_host, slug))
    password = TenantSecrets.from_json(raw).db_password
    with s.connect_as(_role(slug), password, _role(slug)) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    for other in ("postgres", "template1"):
        with pytest.raises(StepFailed, match="permission denied"):
            s.connect_as(_role(slug), password, other).close()


def test_containers_run_with_limits_no_new_privileges_and_no_capabilities(
    tenant: tuple[Path, str], netcup_host: Host, session: Callable[[Host], Any],
) -> None:
    import json

    _, slug = tenant
    s = session(netcup_host)
    docker = ["docker", "-H", f"unix://{netcup_host.docker.socket}"]
    limits = netcup_host.limits
    for component, memory_mb in (("app", limits.app_memory_mb),
                                 ("redis", limits.redis_memory_mb)):
        raw = s.transport.run([*docker, "inspect", f"omni-{slug}-{component}"]).text()
        config = json.loads(raw)[0]["HostConfig"]
        assert config["Memory"] == memory_mb * 1024 * 1024
        assert config["MemorySwap"] == config["Memory"]
        assert config["CpuShares"] == limits.cpu_shares
        assert config["SecurityOpt"] == ["no-new-privileges"]
        assert config["CapDrop"] == ["ALL"]
        assert config["LogConfig"]["Config"] == {
            "max-size": f"{limits.log_max_size_mb}m", "max-file": str(limits.log_max_files)}


def test_a_postgres_connection_closed_by_the_server_is_a_step_failure_not_a_crash(
    netcup_host: Host, session: Callable[[Host], Any],
) -> None:
    s = session(netcup_host)
    with s.postgres() as conn:
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()
    other = session(netcup_host)
    with other.postgres("template1") as killer:
        killer.execute("SELECT pg_terminate_backend(%s)", pid)
    with pytest.raises(StepFailed, match="host netcup: Postgres error"), s.postgres() as conn:
        conn.execute("SELECT 1")
    with s.postgres() as conn:  # the session opens a new one on next use
        assert conn.execute("SELECT 1").fetchone() == (1,)
