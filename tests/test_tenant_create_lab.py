"""``omni tenant create`` end-to-end on the lab's real servers.

Every test drives the real CLI in a subprocess against a private copy of the lab
inventory, so what is checked is what an operator would see.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from omni.errors import StepFailed
from omni.inventory.models import Host
from omni.probe import ProbeError, https_get
from omni.tenant.secrets import TenantSecrets
from omni.tenant.secrets_store import secrets_path
from tests import tenant_lab as tl

pytestmark = pytest.mark.lab

IMAGE_V1 = "omni-lab/medusa:v1"


def _domain(slug: str, host: Host) -> str:
    return f"{slug}.{host.name}.lab.test"


def _create(inventory: Path, slug: str, host: Host, *extra: str) -> tl.Run:
    return tl.omni(
        inventory,
        "--json",
        "tenant",
        "create",
        slug,
        "--host",
        host.name,
        "--domain",
        _domain(slug, host),
        "--image",
        IMAGE_V1,
        *extra,
    )


def _health(host: Host, domain: str) -> int:
    address = host.nginx.listen_address or host.address
    answer = https_get(address, host.nginx.https_port, domain, "/health", host.health.ca_bundle)
    return answer.status


def _read_secrets(session: Any, host: Host, slug: str) -> TenantSecrets:
    raw = session.transport.read_file(secrets_path(host, slug))
    assert raw is not None, "secrets file missing on the host"
    return TenantSecrets.from_json(raw)


@pytest.fixture(scope="module")
def inventory(tmp_path_factory: pytest.TempPathFactory, lab_hosts: Any) -> Iterator[Path]:
    path = tl.copy_lab_inventory(tmp_path_factory.mktemp("inventory"))
    yield path
    for tenant_file in sorted((path / "tenants").glob("*.yaml")):
        tl.omni(path, "tenant", "destroy", tenant_file.stem, "--yes")


@pytest.fixture(scope="module")
def runs() -> list[tl.Run]:
    """Every CLI run of this module, searched for leaked secrets at the end."""
    return []


@pytest.fixture(scope="module")
def first_tenant(inventory: Path, dev_host: Host, runs: list[tl.Run]) -> str:
    slug = tl.unique_slug("alpha")
    run = _create(inventory, slug, dev_host)
    runs.append(run)
    assert run.code == 0, run.stderr
    return slug


def test_create_on_dev_serves_medusa_health_over_verified_tls(
    first_tenant: str, inventory: Path, dev_host: Host
) -> None:
    assert _health(dev_host, _domain(first_tenant, dev_host)) == 200
    text = (inventory / "tenants" / f"{first_tenant}.yaml").read_text()
    assert f"slug: {first_tenant}" in text and "app_port:" in text


def test_create_on_netcup(inventory: Path, netcup_host: Host, runs: list[tl.Run]) -> None:
    slug = tl.unique_slug("nc")
    run = _create(inventory, slug, netcup_host)
    runs.append(run)
    assert run.code == 0, run.stderr
    envelope = run.envelope()
    assert envelope["status"] == "success" and envelope["changed"] is True
    assert envelope["data"]["health"]["status"] == 200
    assert _health(netcup_host, _domain(slug, netcup_host)) == 200


def test_second_create_is_all_noops(first_tenant: str, inventory: Path, runs: list[tl.Run]) -> None:
    run = tl.omni(inventory, "--json", "tenant", "create", first_tenant)
    runs.append(run)
    assert run.code == 0, run.stderr
    envelope = run.envelope()
    assert envelope["changed"] is False
    assert {step["verb"] for step in envelope["steps"]} == {"noop"}


def test_dry_run_changes_nothing_on_the_host(
    first_tenant: str,
    inventory: Path,
    dev_host: Host,
    session: Callable[[Host], Any],
    runs: list[tl.Run],
) -> None:
    s = session(dev_host)
    before = tl.host_snapshot(s)
    slug = tl.unique_slug("dry")
    run = _create(inventory, slug, dev_host, "--dry-run")
    runs.append(run)
    assert run.code == 0, run.stderr
    envelope = run.envelope()
    steps = {step["resource"]: step for step in envelope["steps"]}
    assert steps["postgres.database"]["verb"] == "create"
    assert steps["nginx.vhost"]["diff"].startswith("--- /dev/null")
    assert "********" in steps["medusa.env"]["diff"]
    assert tl.host_snapshot(s) == before
    assert not (inventory / "tenants" / f"{slug}.yaml").exists()


def test_tenant_roles_cannot_reach_each_others_databases(
    first_tenant: str, inventory: Path, dev_host: Host, session: Callable[[Host], Any]
) -> None:
    s = session(dev_host)
    other = tl.unique_slug("beta")
    run = _create(inventory, other, dev_host)
    assert run.code == 0, run.stderr
    mine = _read_secrets(s, dev_host, first_tenant)
    my_role = "tenant_" + first_tenant.replace("-", "_")
    other_db = "tenant_" + other.replace("-", "_")
    with s.connect_as(my_role, mine.db_password, my_role) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (my_role,)
    with pytest.raises(StepFailed, match="permission denied for database"):
        s.connect_as(my_role, mine.db_password, other_db)


def test_killed_at_every_step_then_rerun_converges_while_others_keep_serving(
    first_tenant: str,
    inventory: Path,
    dev_host: Host,
    session: Callable[[Host], Any],
    runs: list[tl.Run],
) -> None:
    watched = _domain(first_tenant, dev_host)
    statuses: list[str] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            try:
                statuses.append(str(_health(dev_host, watched)))
            except ProbeError as exc:
                statuses.append(f"error: {exc}")
            stop.wait(0.1)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    slug = tl.unique_slug("kill")
    domain = _domain(slug, dev_host)
    base = [
        "--json",
        "tenant",
        "create",
        slug,
        "--host",
        dev_host.name,
        "--domain",
        domain,
        "--image",
        IMAGE_V1,
    ]
    killed_at: list[str] = []
    try:
        for _attempt in range(20):
            proc = tl.start_omni(inventory, *base if not killed_at else base[:4])
            assert proc.stderr is not None
            victim = None
            for line in proc.stderr:
                if line.startswith("-> "):
                    resource = line[3:].split(":", 1)[0]
                    if resource not in killed_at:
                        victim = resource
                        break
            if victim is None:
                out, err = proc.communicate(timeout=600)
                runs.append(tl.Run(base, proc.returncode, out, err))
                assert proc.returncode == 0, err
                break
            proc.kill()
            proc.communicate(timeout=60)
            killed_at.append(victim)
        else:
            pytest.fail(f"never converged; killed at {killed_at}")
    finally:
        stop.set()
        poller.join(timeout=30)
    # The database comes from the image's template (built by first_tenant), so migrations
    # have nothing to run: the database step is where the migrated schema appears.
    assert {"postgres.role", "postgres.database", "medusa.app", "nginx.vhost"} <= set(killed_at)
    s = session(dev_host)
    assert tl.tenant_containers(s, slug) == [
        f"omni-{slug}-{c}" for c in ("app", "gw", "publish", "redis")]
    leftovers = s.transport.run(
        [
            "find",
            dev_host.state_dir,
            dev_host.nginx.sites_dir,
            dev_host.nginx.certs_dir,
            "-name",
            "*omni-tmp*",
        ],
        check=False,
    ).text()
    assert leftovers == ""
    again = tl.omni(inventory, "--json", "tenant", "create", slug)
    assert again.code == 0 and again.envelope()["changed"] is False, again.stderr
    assert _health(dev_host, domain) == 200
    assert statuses and set(statuses) == {"200"}, sorted(set(statuses))


def test_no_generated_secret_appears_in_any_output(
    first_tenant: str,
    inventory: Path,
    dev_host: Host,
    session: Callable[[Host], Any],
    runs: list[tl.Run],
) -> None:
    s = session(dev_host)
    verbose = tl.omni(inventory, "-vv", "tenant", "create", first_tenant)
    dry = tl.omni(inventory, "--json", "tenant", "create", first_tenant, "--dry-run")
    haystack = [r.stdout + r.stderr for r in [*runs, verbose, dry]]
    logs = (
        s.transport.run(
            ["find", str(Path(dev_host.nginx.sites_dir).parent), "-name", "*.log"], check=False
        )
        .text()
        .split()
    )
    haystack += [(s.transport.read_file(path) or b"").decode("utf-8", "replace") for path in logs]
    assert len(runs) >= 3
    slugs = {first_tenant} | {
        json.loads(r.stdout.splitlines()[0])["data"].get("tenant", "")
        for r in runs
        if r.stdout.startswith("{")
    }
    for slug in sorted(name for name in slugs if name):
        raw = s.transport.read_file(secrets_path(dev_host, slug))
        if raw is None:
            continue  # created on netcup
        for secret in TenantSecrets.from_json(raw).values():
            for text in haystack:
                assert secret not in text


def test_destroy_keeps_a_dump_and_removes_everything_else(
    tmp_path: Path, netcup_host: Host, session: Callable[[Host], Any]
) -> None:
    # A host without `backup` settings: the final dump stays local (tests/test_backup_lab.py
    # covers the offsite one).
    inventory = tl.strip_backups(tl.copy_lab_inventory(tmp_path / "inventory"))
    slug = tl.unique_slug("gone")
    created = _create(inventory, slug, netcup_host)
    assert created.code == 0, created.stderr
    refused = tl.omni(inventory, "tenant", "destroy", slug)
    assert refused.code == 2
    assert "--yes" in refused.stderr
    run = tl.omni(inventory, "--json", "tenant", "destroy", slug, "--yes")
    assert run.code == 0, run.stderr
    dump = run.envelope()["data"]["dump"]
    assert "no `backup` settings" in run.envelope()["data"]["final_backup"]
    s = session(netcup_host)
    assert s.transport.run(["stat", "-c", "%a %s", dump]).text().split()[0] == "600"
    assert tl.tenant_containers(s, slug) == []
    db = "tenant_" + slug.replace("-", "_")
    with s.postgres() as conn:
        assert (
            conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,)).fetchone() is None
        )
        assert conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (db,)).fetchone() is None
    assert s.transport.read_file(f"{netcup_host.nginx.sites_dir}/omni-{slug}.conf") is None
    assert not (inventory / "tenants" / f"{slug}.yaml").exists()
    with pytest.raises(ProbeError):
        _health(netcup_host, _domain(slug, netcup_host))


def test_failing_health_gate_names_the_step_and_a_fixed_rerun_converges(
    tmp_path: Path, dev_host: Host, session: Callable[[Host], Any]
) -> None:
    inventory = tl.copy_lab_inventory(tmp_path / "inventory")
    hosts = yaml.safe_load((inventory / "hosts.yaml").read_text())
    for body in hosts["hosts"].values():
        body.setdefault("health", {})["deadline_seconds"] = 20
    (inventory / "hosts.yaml").write_text(yaml.safe_dump(hosts))
    slug = tl.unique_slug("broken")
    domain = _domain(slug, dev_host)
    try:
        failed = tl.omni(
            inventory,
            "--json",
            "tenant",
            "create",
            slug,
            "--host",
            "dev",
            "--domain",
            domain,
            "--image",
            "omni-lab/medusa:broken",
        )
        assert failed.code == 3, failed.stderr
        assert "error[health_gate_failed]" in failed.stderr
        assert "did not answer 200 within 20s (last: HTTP 503)" in failed.stderr
        envelope = failed.envelope()
        assert envelope["status"] == "error"
        assert envelope["errors"][0]["code"] == "health_gate_failed"
        tenant_file = inventory / "tenants" / f"{slug}.yaml"
        tenant_file.write_text(tenant_file.read_text().replace("omni-lab/medusa:broken", IMAGE_V1))
        fixed = tl.omni(inventory, "--json", "tenant", "create", slug)
        assert fixed.code == 0, fixed.stderr
        verbs = {s["resource"]: s["verb"] for s in fixed.envelope()["steps"]}
        assert verbs["medusa.migrations"] == "run"
        assert verbs["medusa.app"] == "replace"
        assert verbs["postgres.database"] == "noop"
        assert _health(dev_host, domain) == 200
    finally:
        tl.omni(inventory, "tenant", "destroy", slug, "--yes")


def test_two_creates_on_one_host_at_once_both_converge_on_distinct_ports(
    inventory: Path, dev_host: Host
) -> None:
    slugs = [tl.unique_slug("twin"), tl.unique_slug("twin")]
    procs = [
        tl.start_omni(
            inventory,
            "--json",
            "tenant",
            "create",
            slug,
            "--host",
            "dev",
            "--domain",
            _domain(slug, dev_host),
            "--image",
            IMAGE_V1,
        )
        for slug in slugs
    ]
    results = [proc.communicate(timeout=600) for proc in procs]
    for proc, (_out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
    envelopes = [json.loads(out.splitlines()[0]) for out, _ in results]
    ports = [(e["data"]["app_port"], e["data"]["redis_port"]) for e in envelopes]
    assert len({p for pair in ports for p in pair}) == 4, ports
    for slug in slugs:
        assert _health(dev_host, _domain(slug, dev_host)) == 200


def test_reviewed_plan_of_a_new_tenant_applies_with_expect_plan(
    inventory: Path, netcup_host: Host
) -> None:
    slug = tl.unique_slug("plan")
    first = _create(inventory, slug, netcup_host, "--dry-run")
    second = _create(inventory, slug, netcup_host, "--dry-run")
    fingerprint = first.envelope()["data"]["plan_fingerprint"]
    assert second.envelope()["data"]["plan_fingerprint"] == fingerprint
    refused = _create(inventory, slug, netcup_host, "--expect-plan", "0" * 16)
    assert refused.code == 2
    assert "--expect-plan: the plan changed" in refused.stderr
    applied = _create(inventory, slug, netcup_host, "--expect-plan", fingerprint)
    assert applied.code == 0, applied.stderr
    assert applied.envelope()["changed"] is True
