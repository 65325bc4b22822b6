"""Fleet-scale benchmarks of omni against the lab, and of an Ansible playbook doing the same
health checks over the same hosts, in one run (``make bench-fleet``; issue 12).

What it measures (min / median / max over repeated runs, machine facts and date recorded):
- start-up: ``omni --help``, ``omni health-check`` of zero tenants, ``ansible --version``;
- tenant create of the real Medusa tenants (wall time only; the per-step breakdown against
  the irreducible server work is another part of the issue);
- ``migrate-all --force`` and ``deploy --all`` over the real Medusa tenants with
  ``--parallel`` 1, 2, 4, against the ideal (``fleetlib.ideal_seconds``);
- ``backup --all`` of the real tenants against ``pg_dump | restic backup`` by hand, per
  tenant, one after the other;
- ``health-check`` of N tenants across both hosts for each N of ``--sizes``: beyond the
  real tenants, light stand-in tenants (``omni-lab/standin:1``, ``app_kind: plain``) made
  through omni's own ``tenant create``, each with its own database, Redis, vhost and
  certificate; the same checks by ``bench/ansible/health-check.yml``; SSH connections
  opened per command (from the lab sshd logs); omni's peak RSS.

Everything runs against a private copy of the lab inventory (tenants named ``bf<hex>-*``)
and is torn down at the end: tenants destroyed, their dumps and restic snapshots removed.
Needs a running lab (``make lab``). Benchmarks measure and report: a slow result never
fails the run. Only loopback is contacted (the lab), apart from installing ansible-core and
matplotlib from PyPI into ``.bench/venv`` on first use.

    python bench/fleet.py                       # the full run (see --help for sizes)
    python bench/fleet.py --sizes 10 --real 2 --label "small-N development run"
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import fleetlib as lib  # noqa: E402
from bench.venvs import ensure_venv  # noqa: E402
from omni.inventory.loader import load_inventory, save_tenant  # noqa: E402
from omni.inventory.models import Host, Tenant  # noqa: E402
from omni.tenant.environment import masked_secrets  # noqa: E402
from omni.tenant.network import redis_socket  # noqa: E402
from omni.tenant.spec import TenantSpec  # noqa: E402

LAB_DIR = Path(os.environ.get("OMNI_LAB_DIR") or REPO / ".lab")
LAB_INVENTORY = Path(os.environ.get("OMNI_LAB_INVENTORY") or LAB_DIR / "inventory")
BENCH_DIR = REPO / "bench"
BENCH_VENV = REPO / ".bench" / "venv"
ANSIBLE_DIR = BENCH_DIR / "ansible"
OMNI = [sys.executable, "-m", "omni.cli"]
# The same CLI, noting the source port of each SSH connection (bench/omni_traced.py).
OMNI_TRACED = [sys.executable, str(Path(__file__).resolve().parent / "omni_traced.py")]
REAL_IMAGES = ("omni-lab/medusa:v1", "omni-lab/medusa:v2")
STANDIN_IMAGE = "omni-lab/standin:1"
BENCH_PACKAGES = ("ansible-core>=2.17,<2.19", "matplotlib>=3.8,<4")
# Before the first stand-ins are measured: a cautious guess of what one stand-in tenant
# (socat app, Redis, their containerd shims, a database) takes.
FIRST_GUESS_PER_TENANT = 64 * lib.MiB
MEMORY_FLOOR_PER_TENANT = 16 * lib.MiB


def say(message: str) -> None:
    print(f"bench-fleet {datetime.now(UTC):%H:%M:%S}: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- running things


@dataclass
class Run:
    argv: list[str]
    seconds: float
    returncode: int
    stdout: str
    stderr: str
    max_rss_bytes: int = 0

    def envelope(self) -> dict[str, Any]:
        """omni's JSON envelope from stdout ({} if there is none)."""
        try:
            data: dict[str, Any] = json.loads(self.stdout)
        except ValueError:
            return {}
        return data


def run(argv: Sequence[str], *, env: dict[str, str] | None = None,
        stdin: str | None = None, timeout: float = 3600.0) -> Run:
    """Run ``argv``; wall time, exit status, output and the child's peak RSS (wait4)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            list(argv), stdout=out, stderr=err, cwd=REPO,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            env={**os.environ, "NO_COLOR": "1", **(env or {})},
        )
        if stdin is not None:
            assert proc.stdin is not None
            proc.stdin.write(stdin.encode())
            proc.stdin.close()
        deadline = started + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.005)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Run(list(argv), seconds, proc.returncode, out.read().decode("utf-8", "replace"),
                   err.read().decode("utf-8", "replace"), usage.ru_maxrss * 1024)


def mem_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def machine_facts() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem_total = next(int(line.split()[1]) * 1024
                     for line in Path("/proc/meminfo").read_text().splitlines()
                     if line.startswith("MemTotal:"))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=REPO, check=False).stdout.strip()
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_total / lib.GiB, 1),
        "memory_available_gib_at_start": round(mem_available() / lib.GiB, 1),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "kernel": platform.release(),
        "python": platform.python_version(),
        "commit": commit,
    }


# ---------------------------------------------------------------- the bench's environment


def bench_venv() -> Path:
    """``.bench/venv`` with ansible-core and matplotlib (from PyPI, installed once)."""
    return ensure_venv(BENCH_VENV, BENCH_PACKAGES, say)


class Workspace:
    """A private inventory (a copy of the lab's hosts, this run's tenants) and scratch."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.inventory = root / "inventory"
        (self.inventory / "tenants").mkdir(parents=True)
        self.empty_inventory = root / "empty-inventory"
        (self.empty_inventory / "tenants").mkdir(parents=True)
        raw = yaml.safe_load((LAB_INVENTORY / "hosts.yaml").read_text())
        known = set(Host.model_fields)
        dropped = sorted({k for body in raw["hosts"].values() for k in body if k not in known})
        if dropped:
            # The lab may be newer than this checkout (e.g. a field another branch added).
            say(f"notice: host settings this checkout's omni does not know, dropped from the "
                f"bench's copy: {', '.join(dropped)}")
            for body in raw["hosts"].values():
                for key in dropped:
                    body.pop(key, None)
        text = yaml.safe_dump(raw, sort_keys=False)
        (self.inventory / "hosts.yaml").write_text(text)
        (self.empty_inventory / "hosts.yaml").write_text(text)
        self.hosts: dict[str, Host] = dict(load_inventory(self.inventory).hosts)
        self.known_hosts = root / "known_hosts"
        self.known_hosts.write_text("\n".join(lib.known_hosts_lines(
            (h.address, h.port, h.host_keys) for h in self.hosts.values())) + "\n")
        self.client_fingerprint = lib.key_fingerprint(
            Path(str(next(iter(self.hosts.values())).identity) + ".pub").read_text())

    def omni(self, *args: str) -> list[str]:
        return [*OMNI_TRACED, "--json", "--inventory", str(self.inventory), *args]

    def tenants(self) -> dict[str, Tenant]:
        return dict(load_inventory(self.inventory).tenants)

    def ssh(self, host: Host, command: str, *, stdin: str | None = None,
            timeout: float = 600.0) -> Run:
        """``command`` on ``host`` through OpenSSH, with the pinned host keys only."""
        return run(["ssh", "-i", str(host.identity), "-p", str(host.port),
                    "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                    "-o", "StrictHostKeyChecking=yes",
                    "-o", f"UserKnownHostsFile={self.known_hosts}",
                    f"{host.user}@{host.address}", command], stdin=stdin, timeout=timeout)


@dataclass
class Window:
    """SSH connections accepted while a command ran: ``all`` with omni's client key (other
    users of the lab included), ``own`` only those from the source ports the command's
    processes noted (run them with ``env``; see bench/omni_traced.py)."""

    env: dict[str, str]
    all: dict[str, int] = field(default_factory=dict)
    own: dict[str, int] = field(default_factory=dict)

    def best(self) -> dict[str, int]:
        """``own`` when the command was traced, else ``all``."""
        return dict(self.own) if self.own else dict(self.all)


class SshdLogs:
    """Counts the SSH connections the lab's sshd accepted with omni's client key."""

    def __init__(self, ws: Workspace) -> None:
        self.paths = {h: LAB_DIR / "hosts" / h / "sshd.log" for h in sorted(ws.hosts)}
        self.fingerprint = ws.client_fingerprint
        self.ssh_ports = ",".join(sorted({str(h.port) for h in ws.hosts.values()}))
        self.scratch = ws.root

    def available(self) -> bool:
        return all(p.is_file() for p in self.paths.values())

    @contextmanager
    def window(self) -> Iterator[Window]:
        """Yields a :class:`Window`, filled on exit."""
        fd, trace = tempfile.mkstemp(prefix="ssh-trace-", dir=self.scratch)
        os.close(fd)
        window = Window({"BENCH_SSH_TRACE": trace, "BENCH_SSH_PORTS": self.ssh_ports})
        start = {h: p.stat().st_size if p.is_file() else 0 for h, p in self.paths.items()}
        yield window
        time.sleep(0.3)  # sshd writes its line right after the handshake
        ports = {int(line) for line in Path(trace).read_text().split() if line.isdigit()}
        for h, p in self.paths.items():
            if not p.is_file():
                continue
            with p.open("rb") as f:
                f.seek(start[h])
                text = f.read().decode("utf-8", "replace")
            window.all[h] = lib.count_connections(text, self.fingerprint)
            if ports:
                window.own[h] = lib.count_connections(text, self.fingerprint, ports)


# ---------------------------------------------------------------- tenants


@dataclass
class Fleet:
    ws: Workspace
    prefix: str
    real: list[str] = field(default_factory=list)
    standins: list[str] = field(default_factory=list)
    create_seconds: dict[str, float] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def slug(self, kind: str, index: int) -> str:
        return f"{self.prefix}-{kind}{index:03d}"

    def host_for(self, index: int) -> str:
        names = sorted(self.ws.hosts)
        return names[index % len(names)]

    def create(self, slugs_hosts: Sequence[tuple[str, str]], *, real: bool,
               env: dict[str, str] | None = None) -> None:
        """Create tenants through ``omni tenant create``, several at once (each host's
        ``concurrency`` at most)."""
        gates = {h: threading.Semaphore(self.ws.hosts[h].concurrency) for h in self.ws.hosts}

        def one(slug: str, host: str) -> None:
            domain = f"{slug}.{host}.lab.test"
            if real:
                argv = self.ws.omni("tenant", "create", slug, "--host", host, "--domain",
                                    domain, "--image", REAL_IMAGES[0])
            else:
                save_tenant(self.ws.inventory, Tenant(
                    slug=slug, host=host, domains=[domain], image=STANDIN_IMAGE,
                    app_kind="plain"))
                argv = self.ws.omni("tenant", "create", slug)
            with gates[host]:
                result = run(argv, env=env, timeout=900)
            if result.returncode != 0:
                self.failures.append(f"create {slug}: exit {result.returncode}: "
                                     f"{_last_error(result)}")
                say(f"create {slug} failed: {_last_error(result)}")
                return
            self.create_seconds[slug] = result.seconds
            with self.lock:
                (self.real if real else self.standins).append(slug)

        workers = sum(h.concurrency for h in self.ws.hosts.values())
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for future in [pool.submit(one, s, h) for s, h in slugs_hosts]:
                future.result()
        if not real:
            seed_databases(self.ws, [(s, h) for s, h in slugs_hosts if s in self.standins])

    def destroy_all(self) -> None:
        """Destroy every tenant of the private inventory. Final backups go to the local
        dump dir (the bench's copy of hosts.yaml loses its ``backup`` settings first), and
        those dumps are deleted afterwards with the rest of this run's traces."""
        hosts_file = self.ws.inventory / "hosts.yaml"
        raw = yaml.safe_load(hosts_file.read_text())
        for body in raw["hosts"].values():
            body.pop("backup", None)
        hosts_file.write_text(yaml.safe_dump(raw, sort_keys=False))
        slugs = sorted(load_inventory(self.ws.inventory).tenants)
        say(f"destroying {len(slugs)} tenant(s)")
        workers = sum(h.concurrency for h in self.ws.hosts.values())

        def one(slug: str) -> None:
            result = run(self.ws.omni("tenant", "destroy", slug, "--yes"), timeout=900)
            if result.returncode != 0:
                say(f"destroy {slug} failed (exit {result.returncode}): {_last_error(result)}")

        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(one, slugs))


def seed_databases(ws: Workspace, slugs_hosts: Sequence[tuple[str, str]]) -> None:
    """One small table, owned by the tenant's role, in each stand-in's database: the
    stand-in app never writes its database, and omni refuses a dump with no entries as
    unreadable (``omni/tenant/dumps.py: verify_dump``), so an empty database could be
    neither backed up nor destroyed. One psql session per host, as the admin user."""
    by_host: dict[str, list[str]] = {}
    for slug, name in slugs_hosts:
        by_host.setdefault(name, []).append(slug)
    for host_name, slugs in by_host.items():
        host = ws.hosts[host_name]
        pg = host.postgres
        script = "".join(
            f"\\connect {_db(slug)}\nSET ROLE {_db(slug)};\n"
            "CREATE TABLE IF NOT EXISTS bench_standin (id int PRIMARY KEY, note text);\n"
            "INSERT INTO bench_standin VALUES (1, 'omni fleet bench') ON CONFLICT DO NOTHING;\n"
            for slug in slugs)
        result = ws.ssh(host, f"PGPASSWORD=\"$(cat {shlex.quote(pg.admin_password_file)})\" "
                              f"psql -X -q -v ON_ERROR_STOP=1 -h {pg.host} -p {pg.port} "
                              f"-U {pg.admin_user} -d postgres", stdin=script)
        if result.returncode != 0:
            say(f"seeding stand-in databases on {host_name} failed: {_last_error(result)}")


def _db(slug: str) -> str:
    return "tenant_" + slug.replace("-", "_")


def _last_error(result: Run) -> str:
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    return lines[-1][:300] if lines else f"(no stderr; stdout {result.stdout[-200:]!r})"


# ---------------------------------------------------------------- measurements


def repeat(times: int, fn: Callable[[], float]) -> lib.Stats:
    return lib.stats([fn() for _ in range(times)])


def startup(ws: Workspace, venv: Path, repeats: int) -> dict[str, Any]:
    def timed(argv: list[str]) -> float:
        result = run(argv)
        if result.returncode not in (0,):
            say(f"{' '.join(argv[-3:])}: exit {result.returncode}: {_last_error(result)}")
        return result.seconds

    zero = [*OMNI, "--inventory", str(ws.empty_inventory), "health-check"]
    out = {
        "omni --help": repeat(repeats, lambda: timed([*OMNI, "--help"])).to_dict(),
        "omni health-check (0 tenants)": repeat(repeats, lambda: timed(zero)).to_dict(),
        "ansible --version": repeat(
            repeats, lambda: timed([str(venv / "bin" / "ansible"), "--version"])).to_dict(),
    }
    say(f"start-up: {json.dumps(out)}")
    return out


def fleet_roll(ws: Workspace, logs: SshdLogs, argv: list[str], parallel: int,
               concurrency: dict[str, int]) -> dict[str, Any]:
    """One fleet command with --parallel; wall time against the ideal from its own
    per-tenant times."""
    with logs.window() as conns:
        result = run([*argv, "--parallel", str(parallel)], env=conns.env, timeout=3600)
    tenants = result.envelope().get("data", {}).get("tenants", [])
    per = [(t["host"], float(t["seconds"])) for t in tenants]
    ideal = lib.ideal_seconds(per, parallel, concurrency) if per else 0.0
    statuses: dict[str, int] = {}
    for t in tenants:
        statuses[t["status"]] = statuses.get(t["status"], 0) + 1
    if result.returncode != 0:
        say(f"{' '.join(argv[6:])} --parallel {parallel}: exit {result.returncode}: "
            f"{_last_error(result)}")
    return {
        "parallel": parallel,
        "wall": round(result.seconds, 2),
        "ideal": round(ideal, 2),
        "ratio": round(result.seconds / ideal, 3) if ideal else None,
        "sum_tenant_seconds": round(sum(s for _, s in per), 2),
        "per_tenant": [[host, round(seconds, 2)] for host, seconds in per],
        "tenants": len(tenants),
        "statuses": statuses,
        "exit": result.returncode,
        "ssh_connections": conns.best(),
        "ssh_connections_all": conns.all,
    }


def rolls(ws: Workspace, logs: SshdLogs, fleet: Fleet, parallels: Sequence[int],
          repeats: int) -> dict[str, Any]:
    concurrency = {h: ws.hosts[h].concurrency for h in ws.hosts}
    out: dict[str, Any] = {"migrate-all": [], "deploy": []}
    image = 0
    for parallel in parallels:
        for _ in range(repeats):
            row = fleet_roll(ws, logs, ws.omni("migrate-all", "--force"), parallel, concurrency)
            say(f"migrate-all --force --parallel {parallel}: {row['wall']}s "
                f"(ideal {row['ideal']}s)")
            out["migrate-all"].append(row)
    for parallel in parallels:
        for _ in range(repeats):
            image = 1 - image
            row = fleet_roll(ws, logs, ws.omni("deploy", "--all", "--image", REAL_IMAGES[image]),
                             parallel, concurrency)
            row["image"] = REAL_IMAGES[image]
            say(f"deploy --all --parallel {parallel} -> {REAL_IMAGES[image]}: {row['wall']}s "
                f"(ideal {row['ideal']}s)")
            out["deploy"].append(row)
    for runs in out.values():
        add_serial_ideal(runs, concurrency)
    return out


def add_serial_ideal(runs: list[dict[str, Any]], concurrency: dict[str, int]) -> None:
    """A second ideal for each run: from the per-tenant times of the ``--parallel 1`` run
    (tenants alone on the machine, no contention), so the table shows both the runner's
    own scheduling loss and what running tenants side by side costs on this machine."""
    serial = next((r for r in runs if r["parallel"] == 1 and r["per_tenant"]), None)
    if serial is None:
        return
    per = [(host, float(seconds)) for host, seconds in serial["per_tenant"]]
    for run_row in runs:
        ideal = lib.ideal_seconds(per, run_row["parallel"], concurrency)
        run_row["ideal_from_serial"] = round(ideal, 2)
        run_row["ratio_from_serial"] = round(run_row["wall"] / ideal, 3) if ideal else None


def backups(ws: Workspace, logs: SshdLogs, fleet: Fleet, repeats: int) -> dict[str, Any]:
    """``omni backup --all`` against ``pg_dump | restic backup --stdin`` by hand."""
    tenants = ws.tenants()
    omni_runs: list[dict[str, Any]] = []
    for _ in range(repeats):
        with logs.window() as conns:
            result = run(ws.omni("backup", "--all"), env=conns.env, timeout=3600)
        rows = result.envelope().get("data", {}).get("tenants", [])
        total = sum(int(r.get("bytes") or 0) for r in rows)
        statuses: dict[str, int] = {}
        for row in rows:
            statuses[row["status"]] = statuses.get(row["status"], 0) + 1
        omni_runs.append({"wall": round(result.seconds, 2), "bytes": total,
                          "tenants": len(rows), "exit": result.returncode,
                          "statuses": statuses,
                          "errors": [] if result.returncode == 0 else [_last_error(result)],
                          "ssh_connections": conns.best(),
                          "ssh_connections_all": conns.all})
        if result.returncode != 0:
            say(f"backup --all: exit {result.returncode}: {_last_error(result)}")
    by_hand: list[dict[str, Any]] = []
    for _ in range(repeats):
        seconds = 0.0
        errors = []
        for slug in fleet.real:
            host = ws.hosts[tenants[slug].host]
            done = by_hand_backup(ws, host, slug)
            seconds += done.seconds
            if done.returncode != 0:
                errors.append(f"{slug}: {_last_error(done)}")
        by_hand.append({"wall": round(seconds, 2), "tenants": len(fleet.real),
                        "errors": errors})
    out = {
        "tenants": len(fleet.real),
        "omni": omni_runs,
        "omni_wall": lib.stats([r["wall"] for r in omni_runs]).to_dict(),
        "by_hand": by_hand,
        "by_hand_wall": lib.stats([r["wall"] for r in by_hand]).to_dict(),
    }
    say(f"backup: omni {out['omni_wall']} by hand {out['by_hand_wall']}")
    return out


def by_hand_backup(ws: Workspace, host: Host, slug: str) -> Run:
    """What an operator would type for one tenant: ``pg_dump -Fc | restic backup --stdin``
    on the host (the admin password from its 0600 file into the environment, never argv)."""
    backup = host.backup
    assert backup is not None
    pg = host.postgres
    db = _db(slug)
    sftp = ""
    if backup.repository.startswith("sftp:"):
        peer = backup.repository.split(":", 2)[1]
        sftp = (f"-o sftp.command={shlex.quote(f'ssh -i {backup.identity} -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile={backup.known_hosts} {peer} -s sftp')}")  # noqa: E501
    command = (
        "set -o pipefail; "
        f"PGPASSWORD=\"$(cat {shlex.quote(pg.admin_password_file)})\" "
        f"pg_dump -Fc -h {pg.host} -p {pg.port} -U {pg.admin_user} {db} | "
        f"RESTIC_PASSWORD_FILE={shlex.quote(backup.password_file)} restic "
        f"-r {shlex.quote(backup.repository)} {sftp} -q backup --stdin "
        f"--stdin-filename {slug}.dump --host {host.name} --tag bench-by-hand "
        f"--tag tenant={slug}"
    )
    result = ws.ssh(host, command)
    if result.returncode != 0:
        say(f"by-hand backup of {slug} failed: {_last_error(result)}")
    return result


def config_checksums(ws: Workspace, tenants: dict[str, Tenant]) -> dict[str, dict[str, str]]:
    """sha256 of each tenant's vhost, env file and Redis config as they are on the host
    right after omni created (and health-checked) them: what the playbook compares with.
    One ssh per host."""
    out: dict[str, dict[str, str]] = {}
    by_host: dict[str, list[str]] = {}
    for tenant in tenants.values():
        spec = _spec(ws, tenant)
        by_host.setdefault(tenant.host, []).extend(
            [spec.vhost_path, spec.env_path, spec.redis_conf_path])
    for host_name, paths in by_host.items():
        result = ws.ssh(ws.hosts[host_name], "xargs -0 sha256sum",
                        stdin="\0".join(paths))
        for line in result.stdout.splitlines():
            digest, _, path = line.partition("  ")
            out.setdefault(host_name, {})[path] = digest
    return out


def _spec(ws: Workspace, tenant: Tenant) -> TenantSpec:
    """Names and paths only (secrets masked, ports from the tenant file)."""
    return TenantSpec(tenant, ws.hosts[tenant.host], masked_secrets(), tenant.app_port or 0,
                      tenant.redis_port or 0, now=datetime.now(UTC))


def ansible_inventory(ws: Workspace, tenants: dict[str, Tenant],
                      checksums: dict[str, dict[str, str]]) -> Path:
    """The playbook's inventory: every tenant a host, ``ansible_host`` its server."""
    hosts: dict[str, Any] = {}
    for slug, tenant in sorted(tenants.items()):
        host = ws.hosts[tenant.host]
        spec = _spec(ws, tenant)
        files = [spec.vhost_path, spec.env_path, spec.redis_conf_path]
        hosts[slug] = {
            "ansible_host": host.address,
            "ansible_port": host.port,
            "image": tenant.image,
            "app_container": spec.app_container,
            "docker_cli": host.docker.cli,
            "docker_socket": host.docker.socket,
            "secrets_path": spec.secrets_path,
            "bind_address": spec.bind_address,
            "redis_port": spec.redis_port,
            # Redis lives in the tenant's own network namespace: reached through its
            # gateway's socket, as omni does (see omni.tenant.network).
            "redis_socket": redis_socket(spec),
            "app_port": spec.app_port,
            "pg_host": host.postgres.host,
            "pg_port": host.postgres.port,
            "db_role": spec.role_name,
            "db_name": spec.db_name,
            "health_path": host.health.path,
            "domains": list(tenant.domains),
            "https_port": host.nginx.https_port,
            "nginx_address": host.nginx.listen_address or host.address,
            "ca_bundle": host.health.ca_bundle or "/etc/ssl/certs/ca-certificates.crt",
            "fullchain_path": spec.fullchain_path,
            "renew_before_seconds": host.acme.renew_before_days * 86400,
            "config_files": [{"path": p, "sha256": checksums.get(tenant.host, {}).get(p, "")}
                             for p in files],
        }
    identity = next(iter(ws.hosts.values())).identity
    inventory = {"tenants": {
        "hosts": hosts,
        "vars": {
            "ansible_user": next(iter(ws.hosts.values())).user,
            "ansible_ssh_private_key_file": str(identity),
            "ansible_ssh_common_args": (
                f"-o StrictHostKeyChecking=yes -o UserKnownHostsFile={ws.known_hosts} "
                "-o IdentitiesOnly=yes"),
        },
    }}
    path = ws.root / "ansible-inventory.yml"
    path.write_text(yaml.safe_dump(inventory, sort_keys=False))
    return path


def ansible_health(ws: Workspace, logs: SshdLogs, venv: Path, inventory: Path,
                   forks: int) -> dict[str, Any]:
    control = Path(tempfile.mkdtemp(prefix="cp-", dir=ws.root))
    env = {
        "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"),
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control),
        "ANSIBLE_LOCAL_TEMP": str(ws.root / "ansible-tmp"),
        "ANSIBLE_HOME": str(ws.root / "ansible-home"),
    }
    with logs.window() as conns:
        result = run([str(venv / "bin" / "ansible-playbook"), "-i", str(inventory),
                      "-f", str(forks), str(ANSIBLE_DIR / "health-check.yml")],
                     env=env, timeout=7200)
    # This run's ControlPersist masters: ours to close, by their sockets.
    for sock in control.iterdir():
        subprocess.run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "bench"],
                       capture_output=True, check=False)
    recap = lib.ansible_recap(result.stdout)
    if result.returncode != 0:
        (ws.root / "ansible-last-failure.log").write_text(result.stdout + result.stderr)
        say(f"ansible-playbook exit {result.returncode}: recap {recap}")
    return {"wall": result.seconds, "exit": result.returncode, "recap": recap,
            "ssh_connections": conns.all, "max_rss_bytes": result.max_rss_bytes}


def health_round(ws: Workspace, logs: SshdLogs, venv: Path | None, n: int, repeats: int,
                 ansible_repeats: int) -> dict[str, Any]:
    tenants = ws.tenants()
    n = len(tenants)  # what is checked: a tenant whose create failed is still in it
    omni_runs = []
    for _ in range(repeats):
        with logs.window() as conns:
            result = run(ws.omni("health-check"), env=conns.env, timeout=3600)
        data = result.envelope().get("data", {})
        omni_runs.append({"wall": result.seconds, "exit": result.returncode,
                          "max_rss_bytes": result.max_rss_bytes,
                          "summary": data.get("summary", {}),
                          "tenant_seconds_mean": _mean([float(t.get("seconds") or 0)
                                                       for t in data.get("tenants", [])]),
                          "check_seconds_mean": check_means(data.get("tenants", [])),
                          "ssh_connections": conns.best(),
                          "ssh_connections_all": conns.all})
        if result.returncode != 0:
            say(f"health-check of {n}: exit {result.returncode}: {_last_error(result)}")
    out: dict[str, Any] = {
        "n": n,
        "real": sum(1 for t in tenants.values() if t.app_kind == "medusa"),
        "standin": sum(1 for t in tenants.values() if t.app_kind == "plain"),
        "omni": omni_runs,
        "omni_wall": lib.stats([r["wall"] for r in omni_runs]).to_dict(),
        "omni_max_rss_mib": round(max(r["max_rss_bytes"] for r in omni_runs) / lib.MiB, 1),
    }
    if venv is not None and ansible_repeats > 0:
        inventory = ansible_inventory(ws, tenants, config_checksums(ws, tenants))
        forks = sum(h.concurrency for h in ws.hosts.values())
        runs = [ansible_health(ws, logs, venv, inventory, forks)
                for _ in range(ansible_repeats)]
        out["ansible"] = runs
        out["ansible_forks"] = forks
        out["ansible_wall"] = lib.stats([r["wall"] for r in runs]).to_dict()
        out["speedup"] = round(out["ansible_wall"]["median"] / out["omni_wall"]["median"], 1)
    say(f"health-check N={n}: omni {out['omni_wall']}"
        + (f", ansible {out.get('ansible_wall')}" if "ansible_wall" in out else ""))
    return out


def _mean(values: Sequence[float]) -> float:
    return round(sum(values) / len(values), 3) if values else 0.0


def check_means(tenants: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Mean seconds of each health check over the tenants (where a run's time goes)."""
    by_check: dict[str, list[float]] = {}
    for tenant in tenants:
        for check in tenant.get("checks") or []:
            by_check.setdefault(check["check"], []).append(float(check["seconds"]))
    return {name: _mean(values) for name, values in by_check.items()}


# ---------------------------------------------------------------- clean-up


def remove_traces(ws: Workspace, pattern: str) -> None:
    """Delete the dumps (``<slug>-<stamp>.dump``) in each host's dump dir and the restic
    snapshots (tag ``tenant=<slug>``: omni's backups and the by-hand ones) of the bench
    tenants whose slug is ``<pattern>-m###`` or ``<pattern>-s###`` (``pattern`` a regex:
    this run's prefix, or any run's for ``--cleanup``)."""
    slug = rf"(?:{pattern})-[ms]\d{{3}}"
    dump_name = re.compile(rf"^{slug}-\d{{8}}T\d{{6}}Z\.dump$")
    tenant_tag = re.compile(rf"^tenant={slug}$")
    hosts_raw = yaml.safe_load((LAB_INVENTORY / "hosts.yaml").read_text())["hosts"]
    for name, host in ws.hosts.items():
        dump_dir = host.postgres.dump_dir
        listed = ws.ssh(host, f"ls -1 {shlex.quote(dump_dir)}")
        dumps = [f for f in listed.stdout.split() if dump_name.match(f)]
        if dumps:
            ws.ssh(host, "rm -f -- " + " ".join(shlex.quote(f"{dump_dir}/{f}") for f in dumps))
            say(f"{name}: removed {len(dumps)} dump(s) of bench tenants")
        backup = hosts_raw.get(name, {}).get("backup")
        if not backup:
            continue
        settings = Host.model_validate({**host.model_dump(), "backup": backup}).backup
        assert settings is not None
        sftp = ""
        if settings.repository.startswith("sftp:"):
            peer = settings.repository.split(":", 2)[1]
            sftp = (f"-o sftp.command={shlex.quote(f'ssh -i {settings.identity} -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile={settings.known_hosts} {peer} -s sftp')}")  # noqa: E501
        restic = (f"RESTIC_PASSWORD_FILE={shlex.quote(settings.password_file)} restic "
                  f"-r {shlex.quote(settings.repository)} {sftp}")
        snapshots = ws.ssh(host, f"{restic} snapshots --no-lock --json --host {name}")
        try:
            found = json.loads(snapshots.stdout or "[]") or []
        except ValueError:
            found = []
        ids = [s["id"] for s in found
               if any(tenant_tag.match(t) for t in s.get("tags") or [])]
        if not ids:
            continue
        # restic 0.14 cannot wait for a lock: retry while another restic (omni's prune,
        # another user's backup) holds the repository.
        for _ in range(40):
            result = ws.ssh(host, f"{restic} forget --prune {' '.join(ids)}")
            if result.returncode == 0 or "lock" not in result.stderr.lower():
                break
            time.sleep(3)
        say(f"restic on {name}: forgot {len(ids)} snapshot(s) of bench tenants "
            f"(exit {result.returncode}{': ' + _last_error(result) if result.returncode else ''})")


def cleanup(pattern: str) -> None:
    """Find the bench's tenants on the lab hosts (their state directories), write their
    tenant files into a scratch inventory and destroy them like a run's teardown does; then
    remove their dumps and snapshots (also those of tenants already gone)."""
    ws = Workspace(Path(tempfile.mkdtemp(prefix="omni-bench-cleanup-")))
    name = re.compile(rf"^(?:{pattern})-(?P<kind>[ms])\d{{3}}$")
    try:
        for host_name, host in ws.hosts.items():
            listed = ws.ssh(host, f"ls -1 {shlex.quote(host.state_dir)}/tenants 2>/dev/null")
            for slug in listed.stdout.split():
                match = name.match(slug)
                if not match:
                    continue
                standin = match["kind"] == "s"
                save_tenant(ws.inventory, Tenant(
                    slug=slug, host=host_name, domains=[f"{slug}.{host_name}.lab.test"],
                    image=STANDIN_IMAGE if standin else REAL_IMAGES[0],
                    app_kind="plain" if standin else "medusa"))
                if standin:
                    seed_databases(ws, [(slug, host_name)])
        Fleet(ws, "cleanup").destroy_all()
        remove_traces(ws, pattern)
    finally:
        shutil.rmtree(ws.root, ignore_errors=True)


# ---------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 300],
                   help="tenant counts N for the health-check (default: 10 100 300)")
    p.add_argument("--real", type=int, default=4,
                   help="real Medusa tenants (spread over both hosts; default 4)")
    p.add_argument("--parallel", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--repeats", type=int, default=5, help="omni health-check runs per N")
    p.add_argument("--ansible-repeats", type=int, default=2,
                   help="playbook runs per N up to 100 (default 2)")
    p.add_argument("--ansible-large-repeats", type=int, default=1,
                   help="playbook runs per N above 100 (default 1: ~25 min each at 300)")
    p.add_argument("--ansible-max-n", type=int, default=300,
                   help="skip the playbook above this N (default 300)")
    p.add_argument("--heavy-repeats", type=int, default=2,
                   help="runs of each migrate-all/deploy/backup measurement (default 2)")
    p.add_argument("--startup-repeats", type=int, default=10)
    p.add_argument("--reserve-gib", type=float, default=4.0,
                   help="stop adding tenants when less memory than this would remain")
    p.add_argument("--label", default="full run",
                   help="what kind of run this is, written into the results")
    p.add_argument("--out", type=Path, default=BENCH_DIR, help="where results go")
    p.add_argument("--no-ansible", action="store_true")
    p.add_argument("--skip-rolls", action="store_true",
                   help="no migrate-all/deploy/backup measurements")
    p.add_argument("--keep", action="store_true", help="leave the tenants (debugging)")
    p.add_argument("--cleanup", metavar="PREFIX", nargs="?", const=r"bf[0-9a-f]{4}",
                   help="only remove what a killed run left: tenants named PREFIX-m###/"
                        "-s### (default: any bench run's), their dumps and snapshots")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if not (LAB_INVENTORY / "hosts.yaml").is_file():
        raise SystemExit("bench-fleet: no lab inventory: run `make lab` first")
    if args.cleanup:
        cleanup(args.cleanup)
        return
    started = time.monotonic()
    results: dict[str, Any] = {"label": args.label, "machine": machine_facts(),
                               "args": {k: (str(v) if isinstance(v, Path) else v)
                                        for k, v in vars(args).items()},
                               "notes": []}
    venv = None if args.no_ansible else bench_venv()
    # As pip does for an installed omni: compiled once, so no run pays for compiling
    # (this machine sets PYTHONDONTWRITEBYTECODE, which would make every run compile).
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "omni")], check=True)
    ws = Workspace(Path(tempfile.mkdtemp(prefix="omni-bench-fleet-")))
    logs = SshdLogs(ws)
    if not logs.available():
        results["notes"].append("sshd logs not found under the lab dir: connections not counted")
    prefix = "bf" + secrets.token_hex(2)
    fleet = Fleet(ws, prefix)
    results["prefix"] = prefix
    try:
        results["startup"] = startup(ws, venv or BENCH_VENV, args.startup_repeats) \
            if venv else {}
        real = [(fleet.slug("m", i), fleet.host_for(i)) for i in range(args.real)]
        say(f"creating {len(real)} real Medusa tenant(s)")
        t0 = time.perf_counter()
        with logs.window() as create_conns:
            fleet.create(real, real=True, env=create_conns.env)
        results["create_real"] = {
            "tenants": len(fleet.real), "wall": round(time.perf_counter() - t0, 2),
            "ssh_connections": create_conns.best(),
            "ssh_connections_all": create_conns.all,
            "per_tenant": lib.stats([fleet.create_seconds[s] for s in fleet.real]).to_dict()
            if fleet.real else None,
        }
        if fleet.real and not args.skip_rolls:
            results["rolls"] = rolls(ws, logs, fleet, args.parallel, args.heavy_repeats)
            results["backup"] = backups(ws, logs, fleet, args.heavy_repeats)
        results["health"] = []
        per_tenant = FIRST_GUESS_PER_TENANT
        for n in sorted(args.sizes):
            have = len(fleet.real) + len(fleet.standins)
            add = max(0, n - have)
            available = mem_available()
            fits, needed = lib.memory_fits(available, per_tenant, add,
                                           int(args.reserve_gib * lib.GiB))
            if not fits:
                message = (f"N={n} skipped: {add} more tenants would take about "
                           f"{needed / lib.GiB:.1f} GiB ({per_tenant / lib.MiB:.0f} MiB each, "
                           f"measured) and leave less than {args.reserve_gib} GiB of the "
                           f"{available / lib.GiB:.1f} GiB available")
                say(message)
                results["notes"].append(message)
                break
            if add:
                say(f"creating {add} stand-in tenant(s) for N={n}")
                index = len(fleet.standins) + len(fleet.failures)
                batch = [(fleet.slug("s", index + i), fleet.host_for(index + i))
                         for i in range(add)]
                t0 = time.perf_counter()
                fleet.create(batch, real=False)
                wall = time.perf_counter() - t0
                after = mem_available()
                per_tenant = lib.per_tenant_memory(available, after, add,
                                                   MEMORY_FLOOR_PER_TENANT)
                results.setdefault("create_standin", []).append({
                    "n": n, "added": add, "wall": round(wall, 2),
                    "memory_per_tenant_mib": round(per_tenant / lib.MiB, 1)})
                say(f"{add} stand-ins in {wall:.1f}s; about {per_tenant / lib.MiB:.0f} MiB "
                    "each")
            have = len(fleet.real) + len(fleet.standins)
            if have < n:
                results["notes"].append(f"N={n}: only {have} tenants could be created")
            ansible_runs = (0 if n > args.ansible_max_n else
                            args.ansible_repeats if n <= 100 else args.ansible_large_repeats)
            row = health_round(ws, logs, venv, have, args.repeats, ansible_runs)
            row["target_n"] = n
            results["health"].append(row)
    except Exception as exc:  # still tear down and write what was measured
        results["notes"].append(f"the run stopped early: {type(exc).__name__}: {exc}")
        say(f"stopped early: {type(exc).__name__}: {exc}")
        stopped = True
    else:
        stopped = False
    finally:
        results["failures"] = fleet.failures
        if args.keep:
            say(f"--keep: tenants left in {ws.inventory}")
        else:
            fleet.destroy_all()
            remove_traces(ws, re.escape(prefix))
            shutil.rmtree(ws.root, ignore_errors=True)
    results["bench_seconds"] = round(time.monotonic() - started, 1)
    results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    write_outputs(results, args.out, venv)
    if stopped:
        raise SystemExit(1)


# ---------------------------------------------------------------- output


def write_outputs(results: dict[str, Any], out: Path, venv: Path | None) -> None:
    from bench.fleet_report import render_readme_summary, render_results

    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    plot = out / "health-check-vs-n.png"
    if venv is not None and results.get("health"):
        made = subprocess.run([str(venv / "bin" / "python"), str(BENCH_DIR / "plot.py"),
                               str(out / "results.json"), str(plot)],
                              capture_output=True, text=True, check=False)
        if made.returncode != 0:
            say(f"plot failed: {made.stderr.strip()[-300:]}")
    results_md = out / "RESULTS.md"
    text = results_md.read_text() if results_md.is_file() else "# Benchmark results\n"
    results_md.write_text(lib.replace_section(text, "fleet", render_results(results)))
    readme = REPO / "README.md"
    if out.resolve() == BENCH_DIR.resolve():
        readme.write_text(lib.replace_section(readme.read_text(), "bench-fleet",
                                              render_readme_summary(results)))
    say(f"results in {out / 'RESULTS.md'} and {out / 'results.json'}")


if __name__ == "__main__":
    main()
