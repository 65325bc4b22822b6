"""Hardening of a tenant's Postgres role on the lab: drift granted by hand is planned back,
and the role reaches its own database and nothing else."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from psycopg import sql

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


def _inventory_with(tmp: Path, tenant_inventory: Path, host: str, **changes: Any) -> Path:
    """A copy of ``tenant_inventory`` (tenant files included) with ``changes`` under
    ``hosts.<host>`` (dotted keys for nested settings)."""
    target = tl.copy_lab_inventory(tmp)
    for tenant_file in (tenant_inventory / "tenants").glob("*.yaml"):
        (target / "tenants" / tenant_file.name).write_text(tenant_file.read_text())
    data = yaml.safe_load((target / "hosts.yaml").read_text())
    for dotted, value in changes.items():
        node = data["hosts"][host]
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node[key]
        node[leaf] = value
    (target / "hosts.yaml").write_text(yaml.safe_dump(data))
    return target


def _clean_error(run: tl.Run, code: str, status: int) -> None:
    """One ``error[code]: ...`` line, the documented exit status, never 70, no traceback."""
    assert run.code == status and run.code != 70, (run.code, run.stderr)
    errors = [line for line in run.stderr.splitlines() if line.startswith("error[")]
    assert errors and errors[-1].startswith(f"error[{code}]: "), run.stderr
    assert "Traceback" not in run.stderr + run.stdout


@pytest.mark.parametrize("fault", ["wrong password", "role cannot log in"])
def test_postgres_refusing_omni_is_a_clean_cli_error(
    fault: str, tenant: tuple[Path, str], netcup_host: Host, session: Callable[[Host], Any],
    tmp_path: Path,
) -> None:
    inventory, slug = tenant
    role = f"omni_fault_{tmp_path.name[-6:].replace('-', '_')}"
    password_file = tmp_path / "admin.password"
    password_file.write_text("right-password-1234\n")
    password_file.chmod(0o600)
    s = session(netcup_host)
    with s.postgres() as conn:
        login = "NOLOGIN" if fault == "role cannot log in" else "LOGIN"
        # Utility statements take no bound parameters: the password goes in as a literal.
        conn.execute(sql.SQL("CREATE ROLE {} SUPERUSER " + login + " PASSWORD {}").format(
            sql.Identifier(role), sql.Literal("right-password-1234")))
    try:
        if fault == "wrong password":
            password_file.write_text("wrong-password-5678\n")
        faulty = _inventory_with(tmp_path / "inv", inventory, "netcup", **{
            "postgres.admin_user": role, "postgres.admin_password_file": str(password_file)})
        run = tl.omni(faulty, "tenant", "create", slug, "--dry-run")
        _clean_error(run, "step_failed", 3)
        assert "wrong-password-5678" not in run.stdout + run.stderr
    finally:
        with s.postgres() as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def test_remote_text_with_square_brackets_is_printed_as_it_is(
    tenant: tuple[Path, str], tmp_path: Path,
) -> None:
    """Text from a host that the terminal renderer would read as markup (a closing tag
    with no opening one makes rich raise) reaches the user verbatim, not as exit 70."""
    inventory, _ = tenant
    shout = "[/bold] nginx: [emerg] unexpected \"}\" in [red]/etc/nginx/x.conf:1"
    faulty = _inventory_with(tmp_path, inventory, "netcup", **{
        "nginx.test_command": ["sh", "-c", f"echo '{shout}' >&2; exit 1"]})
    run = tl.omni(faulty, "hosts", "check", "netcup")
    assert run.code == 1 and run.code != 70, (run.code, run.stderr)
    assert "Traceback" not in run.stderr + run.stdout
    assert "[emerg]" in run.stdout and "[/bold]" in run.stdout, run.stdout
