"""Fleet commands on the lab: health-check, certs renew, migrate-all, restart.

Four real Medusa tenants (two on dev, two on netcup) are created once for the module and
shared; each test breaks what it needs, checks what omni reports, and puts it back (by
converging with ``tenant create``), so the tests run in file order.
"""

from __future__ import annotations

import ipaddress
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from omni.errors import StepFailed
from omni.hosts.docker import inspect_host
from omni.inventory.models import Host
from omni.probe import ProbeError, https_get, served_certificate
from omni.tenant.secrets import TenantSecrets
from omni.tenant.secrets_store import secrets_path
from tests import tenant_lab as tl

pytestmark = pytest.mark.lab

IMAGE_V1 = "omni-lab/medusa:v1"


def _domain(slug: str, host: str) -> str:
    return f"{slug}.{host}.lab.test"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, lab_hosts: Any) -> Iterator[
    tuple[Path, dict[str, str]]
]:
    """An inventory with four tenants: slug -> host (dev, dev, netcup, netcup)."""
    inventory = tl.copy_lab_inventory(tmp_path_factory.mktemp("fleet"))
    tenants = {tl.unique_slug(name): host for name, host in (
        ("fa", "dev"), ("fb", "dev"), ("fc", "netcup"), ("fd", "netcup"))}
    procs = [
        tl.start_omni(inventory, "tenant", "create", slug, "--host", host,
                      "--domain", _domain(slug, host), "--image", IMAGE_V1)
        for slug, host in tenants.items()
    ]
    outputs = [p.communicate(timeout=900) for p in procs]
    try:
        for proc, (_, err) in zip(procs, outputs, strict=True):
            assert proc.returncode == 0, err
        yield inventory, tenants
    finally:
        for slug in tenants:
            tl.omni(inventory, "tenant", "destroy", slug, "--yes")


def _slugs(fleet: tuple[Path, dict[str, str]]) -> list[str]:
    return list(fleet[1])


def _by_tenant(run: tl.Run) -> dict[str, dict[str, Any]]:
    return {row["tenant"]: row for row in run.envelope()["data"]["tenants"]}


def _checks(row: dict[str, Any]) -> dict[str, str]:
    return {c["check"]: c["status"] for c in row["checks"]}


def _host(lab_hosts: Any, name: str) -> Host:
    return lab_hosts.hosts[name]  # type: ignore[no-any-return]


def _edit_hosts(inventory: Path, target: Path, host: str, **changes: Any) -> Path:
    """A copy of ``inventory`` (tenants included) with ``changes`` under ``hosts.<host>``
    (dotted keys reach nested settings: ``acme.renew_before_days``)."""
    target.mkdir(parents=True, exist_ok=True)
    (target / "tenants").mkdir(exist_ok=True)
    for tenant_file in (inventory / "tenants").glob("*.yaml"):
        (target / "tenants" / tenant_file.name).write_text(tenant_file.read_text())
    data = yaml.safe_load((inventory / "hosts.yaml").read_text())
    for dotted, value in changes.items():
        node = data["hosts"][host]
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    (target / "hosts.yaml").write_text(yaml.safe_dump(data))
    return target


def _set_tenant(inventory: Path, slug: str, **changes: Any) -> None:
    path = inventory / "tenants" / f"{slug}.yaml"
    data = yaml.safe_load(path.read_text())
    data.update(changes)
    path.write_text(yaml.safe_dump(data))


def _serial(host: Host, domain: str) -> int:
    der = served_certificate(host.nginx.listen_address or host.address, host.nginx.https_port,
                             domain, host.health.ca_bundle)
    return x509.load_der_x509_certificate(der).serial_number


def _redis(session: Any, slug: str, *commands: tuple[str, ...]) -> bytes:
    """Send ``commands`` on one connection to the tenant's Redis (through its gateway's
    socket: nothing else reaches it); the simple replies."""
    from omni.tenant.checks import _resp_command
    from omni.tenant.network import open_socket

    path = f"{session.host.state_dir}/tenants/{slug}/net/redis.sock"
    stream = open_socket(session, path)
    try:
        stream.settimeout(5)
        stream.sendall(b"".join(_resp_command(*c) for c in commands))
        replies = b""
        while replies.count(b"\r\n") < len(commands):
            chunk = stream.recv(256)
            if not chunk:
                break
            replies += chunk
        return replies
    finally:
        stream.close()


def test_health_check_all_healthy_with_every_check_in_the_envelope(
    fleet: tuple[Path, dict[str, str]],
) -> None:
    inventory, tenants = fleet
    run = tl.omni(inventory, "--json", "health-check")
    assert run.code == 0, run.stderr
    envelope = run.envelope()
    assert envelope["command"] == "health-check" and envelope["status"] == "success"
    assert envelope["data"]["checks"] == [
        "app", "redis", "database", "upstream", "https", "certificate", "config"]
    rows = _by_tenant(run)
    assert set(rows) == set(tenants)
    for slug, row in rows.items():
        assert row["host"] == tenants[slug] and row["status"] == "ok", row
        assert set(_checks(row).values()) == {"pass"}, row
        assert all(isinstance(c["seconds"], float) and c["detail"] for c in row["checks"])
    human = tl.omni(inventory, "health-check")
    assert human.code == 0 and all(slug in human.stdout for slug in tenants)


# Run with node inside a tenant's app container: connects to argv[1] (host:port) and says
# what happened; with argv[2] = "pg:<db>", logs in to that database with the container's own
# DATABASE_URL credentials; with "redis", authenticates with its own REDIS_URL and PINGs.
_PROBE_JS = r"""
const [target, mode] = process.argv.slice(1);
const [host, port] = target.split(':');
if ((mode || '').startsWith('pg:')) {
  const url = new URL(process.env.DATABASE_URL);
  const { Client } = require('/app/node_modules/pg');
  const c = new Client({ host, port: +port, user: url.username,
    password: decodeURIComponent(url.password), database: mode.slice(3),
    connectionTimeoutMillis: 3000 });
  c.connect().then(() => c.query('SELECT 1')).then(() => { console.log('OK'); c.end(); })
   .catch(e => { console.log('ERR ' + (e.code || e.message)); process.exit(0); });
} else {
  const s = require('net').connect({ host, port: +port, timeout: 3000 }, () => {
    if (mode !== 'redis') { console.log('CONNECTED'); s.end(); return; }
    const pw = decodeURIComponent(new URL(process.env.REDIS_URL).password);
    s.write(`AUTH ${pw}\r\nPING\r\n`);
  });
  let got = '';
  s.on('data', d => { got += d; if (got.includes('PONG') || got.startsWith('-')) {
    console.log(got.includes('+PONG') ? 'PONG' : 'ERR ' + got.trim()); s.destroy(); } });
  s.on('error', e => console.log(e.code));
  s.on('timeout', () => { console.log('TIMEOUT'); s.destroy(); });
}
"""


def _from_inside(host: Host, container: str, target: str, mode: str = "") -> str:
    """What a connection from inside ``container`` (its own network namespace) to
    ``target`` gives: CONNECTED, OK, PONG, or the error (ECONNREFUSED, ERR <sqlstate>...)."""
    argv = [host.docker.cli or "docker", "-H", f"unix://{host.docker.socket}", "exec",
            container, "node", "-e", _PROBE_JS, target, mode]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_one_docker_inspect_sees_what_the_engine_api_sees_container_by_container(
    fleet: tuple[Path, dict[str, str]], lab_hosts: Any, session: Callable[[Host], Any],
) -> None:
    _, tenants = fleet
    dev = session(_host(lab_hosts, "dev"))
    names = [f"omni-{slug}-app" for slug, host in tenants.items() if host == "dev"]
    missing = f"omni-{tl.unique_slug('gone')}-app"
    seen = inspect_host(dev.transport, "dev", cli=dev.host.docker.cli,
                        socket_path=dev.host.docker.socket, containers=[*names, missing],
                        images=[IMAGE_V1, "omni-lab/absent:0"])
    assert sorted(seen.containers) == sorted(names)
    for name in names:
        assert seen.containers[name] == dev.docker().container(name)
    assert seen.image_ids == {IMAGE_V1: dev.docker().image_id(IMAGE_V1)}
    nothing = inspect_host(dev.transport, "dev", cli=dev.host.docker.cli,
                           socket_path=dev.host.docker.socket, containers=[missing], images=[])
    assert nothing.containers == {} and nothing.image_ids == {}
    with pytest.raises(StepFailed, match="docker inspect failed"):
        inspect_host(dev.transport, "dev", cli=dev.host.docker.cli,
                     socket_path="/run/omni-no-such-docker.sock", containers=names, images=[])


def test_a_tenant_reaches_its_own_redis_and_database_and_nothing_of_a_neighbour(
    fleet: tuple[Path, dict[str, str]], lab_hosts: Any,
) -> None:
    inventory, _ = fleet
    fa, fb, _, _ = _slugs(fleet)
    dev = _host(lab_hosts, "dev")
    mine, theirs = (yaml.safe_load((inventory / "tenants" / f"{s}.yaml").read_text())
                    for s in (fa, fb))
    app = f"omni-{fa}-app"
    pg = f"127.0.0.1:{dev.postgres.port}"
    # Its own Redis and database, through its namespace's loopback.
    assert _from_inside(dev, app, f"127.0.0.1:{mine['redis_port']}", "redis") == "PONG"
    assert _from_inside(dev, app, pg, f"pg:tenant_{fa.replace('-', '_')}") == "OK"
    # The neighbour's Redis: not in this namespace, and not on the host either.
    for target in (f"127.0.0.1:{theirs['redis_port']}",
                   f"{dev.bind_address}:{theirs['redis_port']}"):
        assert _from_inside(dev, app, target) in ("ECONNREFUSED", "TIMEOUT"), target
    # The neighbour's database: refused by Postgres (no CONNECT for this role) ...
    refused = _from_inside(dev, app, pg, f"pg:tenant_{fb.replace('-', '_')}")
    assert refused in ("ERR 42501", "ERR 28000"), refused
    # ... and the host's own services (Postgres itself, sshd, the neighbour's app port, the
    # ACME server) are not reachable at all.
    for target in (f"{dev.postgres.host}:{dev.postgres.port}", f"{dev.address}:{dev.port}",
                   f"{dev.bind_address}:{theirs['app_port']}", "127.0.0.1:14000"):
        assert _from_inside(dev, app, target) in ("ECONNREFUSED", "TIMEOUT"), target


def test_only_loopback_addresses_carry_tenant_listeners(
    fleet: tuple[Path, dict[str, str]], lab_hosts: Any,
) -> None:
    """Every socket a tenant's containers listen on in the host's namespace (the published
    app ports) is on loopback; Redis and the app themselves listen on none there."""
    inventory, tenants = fleet
    listeners = subprocess.run(["ss", "-Htlnp"], capture_output=True, text=True, check=True,
                               timeout=30).stdout.splitlines()
    for slug, host_name in tenants.items():
        host = _host(lab_hosts, host_name)
        data = yaml.safe_load((inventory / "tenants" / f"{slug}.yaml").read_text())
        published = {data["app_port"], data["standby_app_port"]}
        found: dict[int, list[str]] = {}
        for line in listeners:
            local = line.split()[3]
            address, _, port = local.rpartition(":")
            if int(port) in published | {data["redis_port"]}:
                found.setdefault(int(port), []).append(address)
        assert data["redis_port"] not in found or all(
            ipaddress.ip_address(a.strip("[]").split("%")[0]).is_loopback
            for a in found[data["redis_port"]]), (slug, found)
        for port in published:
            assert found.get(port), (slug, port, "not published")
            assert all(a == host.bind_address for a in found[port]), (slug, port, found[port])
    non_loopback = [line for line in listeners
                    if any(p in line for p in ('"socat"', '"redis-server"', '"node"'))
                    and not ipaddress.ip_address(
                        line.split()[3].rpartition(":")[0].strip("[]").split("%")[0]
                    ).is_loopback]
    assert non_loopback == []


def test_health_check_names_a_stopped_app_a_hand_edited_vhost_and_a_wrong_redis_password(
    fleet: tuple[Path, dict[str, str]], lab_hosts: Any, session: Callable[[Host], Any],
) -> None:
    inventory, _ = fleet
    fa, fb, fc, fd = _slugs(fleet)
    dev, netcup = session(_host(lab_hosts, "dev")), session(_host(lab_hosts, "netcup"))
    dev.docker().stop(f"omni-{fa}-app")
    vhost = f"{dev.host.nginx.sites_dir}/omni-{fb}.conf"
    original = dev.transport.read_file(vhost)
    dev.transport.write_file(vhost, original + b"# tuned by hand\n", mode=0o644)
    raw = netcup.transport.read_file(secrets_path(netcup.host, fc))
    password = TenantSecrets.from_json(raw).redis_password
    changed = "changed-by-hand-1234"
    answer = _redis(netcup, fc, ("AUTH", password),
                    ("CONFIG", "SET", "requirepass", changed))
    assert answer == b"+OK\r\n+OK\r\n", answer
    try:
        run = tl.omni(inventory, "--json", "health-check")
        assert run.code == 1, run.stderr
        rows = _by_tenant(run)
        assert _checks(rows[fa])["app"] == "fail" and rows[fa]["status"] == "failed"
        assert _checks(rows[fb])["config"] == "fail"
        assert "edited by hand" in rows[fb]["detail"] and vhost in rows[fb]["detail"]
        assert _checks(rows[fc])["redis"] == "fail"
        assert "authentication" in rows[fc]["detail"]
        assert password not in run.stdout + run.stderr
        assert rows[fd]["status"] == "ok"
        assert {c for c, s in _checks(rows[fa]).items() if s == "fail"} >= {"app", "upstream"}
    finally:
        _redis(netcup, fc, ("AUTH", changed), ("CONFIG", "SET", "requirepass", password))
        for slug in (fa, fb):
            assert tl.omni(inventory, "tenant", "create", slug).code == 0
    healed = tl.omni(inventory, "--json", "health-check", fa, fb, fc)
    assert healed.code == 0, healed.stdout


def test_health_check_warns_inside_the_renewal_window_without_failing(
    fleet: tuple[Path, dict[str, str]], tmp_path: Path,
) -> None:
    inventory, _ = fleet
    fd = _slugs(fleet)[3]
    # Lab certificates live 90 days: a 90-day window puts every netcup one inside it.
    window = _edit_hosts(inventory, tmp_path / "inv", "netcup", **{
        "acme.renew_before_days": 90})
    run = tl.omni(window, "--json", "health-check", fd)
    assert run.code == 0, run.stderr
    row = _by_tenant(run)[fd]
    assert row["status"] == "warning" and _checks(row)["certificate"] == "warn"
    assert "renewal window" in row["detail"]


def test_health_check_reports_an_unreachable_host_and_still_checks_the_other(
    fleet: tuple[Path, dict[str, str]], tmp_path: Path,
) -> None:
    inventory, tenants = fleet
    dead = _edit_hosts(inventory, tmp_path / "inv", "netcup", port=1)
    run = tl.omni(dead, "--json", "health-check")
    assert run.code == 5, run.stderr
    rows = _by_tenant(run)
    for slug, host in tenants.items():
        assert rows[slug]["status"] == ("unreachable" if host == "netcup" else "ok"), rows
    assert "error[host_unreachable]" in run.stderr


def test_certs_renew_renews_exactly_the_due_certificate_then_nothing(
    fleet: tuple[Path, dict[str, str]], lab_hosts: Any, tmp_path: Path,
) -> None:
    inventory, tenants = fleet
    netcup = _host(lab_hosts, "netcup")
    fc, fd = _slugs(fleet)[2:]
    before = {slug: _serial(_host(lab_hosts, h), _domain(slug, h)) for slug, h in
              tenants.items()}
    # A second name the certificate does not cover makes fd's certificate due.
    extra = f"www-{fd}.netcup.lab.test"
    _set_tenant(inventory, fd, domains=[_domain(fd, "netcup"), extra])
    dry = tl.omni(inventory, "--json", "certs", "renew", "--dry-run")
    assert dry.code == 0, dry.stderr
    assert {s for s, r in _by_tenant(dry).items() if r["status"] == "ok"} == {fd}
    assert _serial(netcup, _domain(fd, "netcup")) == before[fd]
    run = tl.omni(inventory, "--json", "certs", "renew")
    assert run.code == 0, run.stderr
    rows = _by_tenant(run)
    assert {s for s, r in rows.items() if r["status"] == "ok"} == {fd}
    assert {s for s, r in rows.items() if r["status"] == "skipped"} == set(tenants) - {fd}
    after = {slug: _serial(_host(lab_hosts, h), _domain(slug, h)) for slug, h in
             tenants.items()}
    assert after[fd] != before[fd]
    assert {s: after[s] for s in tenants if s != fd} == {
        s: before[s] for s in tenants if s != fd}
    again = tl.omni(inventory, "--json", "certs", "renew")
    assert again.code == 0 and again.envelope()["changed"] is False
    assert set(r["status"] for r in _by_tenant(again).values()) == {"skipped"}
    assert "nothing to renew" in again.envelope()["data"]["verdict"]
    # The window makes netcup's certificates due; a dry run names them and changes nothing.
    window = _edit_hosts(inventory, tmp_path / "inv", "netcup", **{
        "acme.renew_before_days": 90})
    due = tl.omni(window, "--json", "certs", "renew", "--dry-run")
    assert {s for s, r in _by_tenant(due).items() if r["status"] == "ok"} == {fc, fd}
    assert tl.omni(inventory, "tenant", "create", fd).code == 0  # vhost serves www- too


def test_migrate_all_dumps_first_reports_a_failing_tenant_with_its_dump_and_migrates_others(
    fleet: tuple[Path, dict[str, str]], lab_hosts: Any, session: Callable[[Host], Any],
) -> None:
    inventory, _ = fleet
    fa, fb, fc, fd = _slugs(fleet)
    _set_tenant(inventory, fa, image="omni-lab/medusa:migrate-fails")
    _set_tenant(inventory, fb, image="omni-lab/medusa:v2")
    try:
        dry = tl.omni(inventory, "--json", "migrate-all", "--dry-run")
        assert dry.code == 0, dry.stderr
        planned = _by_tenant(dry)
        assert [planned[s]["status"] for s in (fa, fb, fc, fd)] == [
            "ok", "ok", "skipped", "skipped"]
        run = tl.omni(inventory, "--json", "migrate-all", "--parallel", "1")
        assert run.code == 3, run.stderr
        rows = _by_tenant(run)
        # --parallel 1: the two migrations on dev never overlapped.
        first, second = sorted((rows[fa], rows[fb]), key=lambda r: r["started"])
        assert first["started"] + first["seconds"] <= second["started"] + 0.05
        assert rows[fa]["status"] == "failed" and rows[fa]["dump"]
        assert "restore from" in rows[fa]["detail"]
        assert rows[fb]["status"] == "ok" and rows[fb]["dump"]
        assert rows[fc]["status"] == rows[fd]["status"] == "skipped"
        assert "already recorded" in rows[fc]["detail"]
        dev = session(_host(lab_hosts, "dev"))
        for dump in (rows[fa]["dump"], rows[fb]["dump"]):
            assert dev.transport.stat(dump).mode == 0o600
            _restore_into_scratch(dev, dump)
        again = tl.omni(inventory, "--json", "migrate-all", "--tenant", fb)
        assert again.code == 0 and _by_tenant(again)[fb]["status"] == "skipped"
    finally:
        _set_tenant(inventory, fa, image=IMAGE_V1)
        _set_tenant(inventory, fb, image=IMAGE_V1)


def _restore_into_scratch(session: Any, dump: str) -> None:
    """pg_restore the dump into a scratch database; it must hold Medusa's tables."""
    scratch = "omni_scratch_restore"
    pg = session.host.postgres
    with session.postgres() as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {scratch}")
        conn.execute(f"CREATE DATABASE {scratch}")
    try:
        password = session.admin_password()
        restored = session.transport.run(
            ["env", f"PGPASSWORD={password}", "pg_restore", "--no-owner", f"--host={pg.host}",
             f"--port={pg.port}", f"--username={pg.admin_user}", f"--dbname={scratch}", dump],
            check=False, secrets=[password], timeout=300,
        )
        assert restored.ok, restored.stderr[-500:]
        with session.postgres(scratch) as conn:
            tables = conn.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema='public'"
            ).fetchone()
        assert tables is not None and tables[0] > 50
    finally:
        session.close()  # the scratch connection must go before the drop
        with session.postgres() as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {scratch}")


def test_restart_keeps_the_neighbours_traffic_and_stops_at_the_first_failure(
    fleet: tuple[Path, dict[str, str]], lab_hosts: Any, session: Callable[[Host], Any],
) -> None:
    inventory, _ = fleet
    fa, fb, fc, fd = _slugs(fleet)
    netcup = _host(lab_hosts, "netcup")
    failures: list[str] = []
    answered = [0]
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            try:
                answer = https_get(netcup.nginx.listen_address or netcup.address,
                                   netcup.nginx.https_port, _domain(fd, "netcup"), "/health",
                                   netcup.health.ca_bundle, timeout=5)
                if answer.status != 200:
                    failures.append(f"HTTP {answer.status}")
                answered[0] += 1
            except ProbeError as exc:
                failures.append(str(exc))

    client = threading.Thread(target=hammer)
    client.start()
    try:
        run = tl.omni(inventory, "--json", "restart", fc, "--service", "all")
    finally:
        stop.set()
        client.join()
    assert run.code == 0, run.stderr
    assert _by_tenant(run)[fc]["status"] == "ok"
    assert failures == [] and answered[0] > 0
    # A tenant whose Redis container is gone fails; a roll one at a time stops there.
    session(_host(lab_hosts, "dev")).docker().remove(f"omni-{fa}-redis", force=True)
    rolled = tl.omni(inventory, "--json", "restart", fa, fb, "--service", "all",
                     "--parallel", "1")
    assert rolled.code == 3, rolled.stderr
    rows = _by_tenant(rolled)
    assert rows[fa]["status"] == "failed" and rows[fb]["status"] == "not_run"
    assert tl.omni(inventory, "tenant", "create", fa).code == 0


def test_fleet_commands_refuse_bad_input_before_connecting(
    fleet: tuple[Path, dict[str, str]],
) -> None:
    inventory, _ = fleet
    for args, field in (
        (("health-check", "no-such-tenant"), "no tenant"),
        (("health-check", "--host", "nohost"), "unknown host"),
        (("migrate-all", "--parallel", "0"), "--parallel"),
        (("restart",), "--all"),
        (("restart", "--all", "--service", "db"), "--service"),
        (("certs", "renew", "Bad_Slug"), "SLUG"),
    ):
        run = tl.omni(inventory, *args)
        assert run.code == 2, (args, run.stderr)
        assert field in run.stderr and "Traceback" not in run.stderr
        assert len(run.stderr.strip().splitlines()) == 1, run.stderr
