"""``tenant create`` of a real Medusa tenant, step by step, beside the irreducible server
work inside each step measured in the same run without omni (``make bench-create``; issue
12, item 1).

For each of ``--runs`` rounds, on lab host dev, on both paths interleaved (**migrating**:
``postgres.template_databases: false``, Medusa's migrations run on an empty database;
**template**: the database is copied from the image's template database):

1. ``omni tenant create`` of a fresh tenant (``cb<hex>m<i>`` / ``cb<hex>t<i>``): the whole
   CLI wall time, and a timeline from inside the process (``bench/omni_timed.py``: imports,
   SSH connect, lock, observe + plan, each step, verify, health gate), then ``tenant
   destroy --yes`` (untimed);
2. right after, the same kind of server work done directly on the host, each measurement
   over one SSH connection of its own and timed there (bash ``$EPOCHREALTIME`` marks, psql
   ``\\timing``): ``CREATE DATABASE`` (empty, or ``... TEMPLATE`` of the image's omni template
   database, then the hand-over ``REASSIGN OWNED``), ``medusa db:migrate`` in a ``docker run
   --rm`` (migrating path), ``docker run -d`` of a small Redis container until it answers
   PING (omni starts three small containers), ``docker run -d`` of Medusa until ``/health``
   answers 200, the onboarding one-off (``medusa exec`` of omni's script making the
   publishable key), one ACME order against Pebble (raw protocol with 20 ms polls, and
   certbot ``certonly --webroot`` for reference), ``nginx -t`` + reload + until a new vhost
   answers over HTTP and HTTPS;
3. the report: per path, each omni step (min / median / max) beside its counterpart, the
   sums and the overheads (wall minus the server work, serial and on omni's critical path),
   omni's non-step time by phase, the targets; then (``--profile``, default on) one
   template-path create under py-spy (wall-clock, idle included): where omni's own time goes.

Prints a Markdown section; ``--write`` also puts it into ``bench/RESULTS.md`` between
``<!-- create:start -->`` / ``<!-- create:end -->`` and the raw numbers into
``bench/create_results.json``. Needs a running lab (``make lab``); installs certbot and
py-spy from PyPI into ``.bench/create-venv`` on first use (measurement tools only). Everything
it makes on the lab is named ``cb<hex>...`` and removed at the end. Benchmarks measure and
report: nothing here fails on a time.

    python bench/create_breakdown.py [--runs 3] [--image omni-lab/medusa:v1] [--write]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import secrets
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import createlib as lib  # noqa: E402
from bench.fleet import Run, machine_facts, run  # noqa: E402
from bench.fleetlib import known_hosts_lines, markdown_table, replace_section  # noqa: E402
from bench.venvs import ensure_venv  # noqa: E402
from omni.inventory.loader import load_inventory  # noqa: E402
from omni.inventory.models import Host  # noqa: E402
from omni.render import render  # noqa: E402

LAB_DIR = Path(os.environ.get("OMNI_LAB_DIR") or REPO / ".lab")
LAB_INVENTORY = Path(os.environ.get("OMNI_LAB_INVENTORY") or LAB_DIR / "inventory")
BENCH_VENV = REPO / ".bench" / "create-venv"
BENCH_PACKAGES = ("certbot>=4,<6", "py-spy>=0.3,<0.5")
RESULTS_MD = REPO / "bench" / "RESULTS.md"
RESULTS_JSON = REPO / "bench" / "create_results.json"
TIMED = [sys.executable, str(REPO / "bench" / "omni_timed.py")]
OMNI = [sys.executable, "-m", "omni.cli"]
HOST = "dev"
PATHS = ("migrating", "template")
POLL = 0.02  # the bench's own polls (health, nginx, ACME): as tight as is reasonable
STEP_ORDER = (*lib.SMALL_WRITES, *lib.SMALL_CONTAINERS, "postgres.database",
              "medusa.migrations", "medusa.app", "acme.certificate", "nginx.vhost",
              "medusa.publishable_key", "health.gate")
PROFILE_RATE = 100
TARGETS = {"overhead": 2.0, "create": 20.0, "template_create": 8.0}


def say(message: str) -> None:
    print(f"bench-create {datetime.now(UTC):%H:%M:%S}: {message}", file=sys.stderr, flush=True)


def bench_venv() -> Path:
    """``.bench/create-venv`` with certbot and py-spy (from PyPI, installed once)."""
    return ensure_venv(BENCH_VENV, BENCH_PACKAGES, say)


def child_env(**extra: str) -> dict[str, str]:
    """This checkout's omni first on the path (a worktree's venv may point elsewhere)."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, **extra}


# ---------------------------------------------------------------- the lab host


class Lab:
    """Host dev of a private copy of the lab inventory: two inventories (one per path,
    without backups: destroy then keeps a local dump only) and OpenSSH to the host."""

    def __init__(self, root: Path, prefix: str) -> None:
        self.root = root
        self.prefix = prefix
        raw = yaml.safe_load((LAB_INVENTORY / "hosts.yaml").read_text())
        known = set(Host.model_fields)
        for body in raw["hosts"].values():
            body.pop("backup", None)
            for key in [k for k in body if k not in known]:
                body.pop(key)
        self.inventories: dict[str, Path] = {}
        for path in PATHS:
            inventory = root / path
            (inventory / "tenants").mkdir(parents=True)
            for body in raw["hosts"].values():
                body.setdefault("postgres", {})["template_databases"] = path == "template"
            (inventory / "hosts.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
            self.inventories[path] = inventory
        self.host: Host = load_inventory(self.inventories["template"]).hosts[HOST]
        self.known_hosts = root / "known_hosts"
        self.known_hosts.write_text("\n".join(known_hosts_lines(
            [(self.host.address, self.host.port, self.host.host_keys)])) + "\n")
        self.scratch = f"/tmp/omni-{prefix}"  # on the host
        self.role = f"{prefix}_r"
        self.role_password = secrets.token_hex(16)
        self.redis_password = secrets.token_hex(16)
        self.redis_port = self.app_port = self.small_port = 0

    def ssh(self, script: str, *, timeout: float = 900.0) -> Run:
        """``script`` (bash) on the host over one SSH connection, after a preamble
        setting Postgres, Docker and ``mark NAME`` up; on stdin, so no secret is in argv."""
        return run(["ssh", "-i", str(self.host.identity), "-p", str(self.host.port),
                    "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                    "-o", "StrictHostKeyChecking=yes", "-o", "LogLevel=ERROR",
                    "-o", f"UserKnownHostsFile={self.known_hosts}",
                    f"{self.host.user}@{self.host.address}", "bash -s"],
                   stdin=self.preamble() + script, timeout=timeout)

    def check(self, script: str, what: str, *, timeout: float = 900.0) -> Run:
        result = self.ssh(script, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"{what} failed ({result.returncode}): "
                               f"{(result.stderr or result.stdout)[-1500:]}")
        return result

    def preamble(self) -> str:
        pg, docker = self.host.postgres, self.host.docker
        q = shlex.quote
        return (
            "set -euo pipefail\n"
            f"export PGHOST={q(pg.host)} PGPORT={pg.port} PGUSER={q(pg.admin_user)} "
            "PGDATABASE=postgres\n"
            f"export PGPASSWORD=\"$(cat {q(pg.admin_password_file)})\"\n"
            f"export DOCKER_HOST={q('unix://' + docker.socket)}\n"
            f"docker() {{ command {q(docker.cli)} \"$@\"; }}\n"
            "mark() { echo \"mark $1 $EPOCHREALTIME\"; }\n"
            "psqlq() { psql -X -q -v ON_ERROR_STOP=1 \"$@\"; }\n"
            # wait_until SECONDS CMD...: poll CMD every POLL s; exit 1 at the deadline
            "wait_until() { local end=$((SECONDS + $1)); shift; "
            f"until \"$@\"; do ((SECONDS < end)) || return 1; sleep {POLL}; done; }}\n"
            f"S={q(self.scratch)}\n"
        )

    def free_ports(self, count: int) -> list[int]:
        """``count`` ports nothing listens on at the host's address, outside omni's
        ranges (17000-17999)."""
        out = self.check("ss -Hltn\n", "listing listeners").stdout
        taken = {int(m) for m in re.findall(r":(\d+)\s", out)}
        free = [p for p in range(17000, 18000) if p not in taken]
        return random.sample(free, count)


# ---------------------------------------------------------------- omni's create


@dataclass
class Create:
    slug: str
    path: str
    wall: float
    steps: dict[str, float]
    phases: dict[str, float]
    health_seconds: float | None
    remote: dict[str, Any]


def omni_create(lab: Lab, path: str, slug: str, image: str) -> Create:
    """One ``tenant create`` through ``bench/omni_timed.py``, then its destroy (untimed)."""
    inventory = lab.inventories[path]
    timeline = lab.root / f"{slug}.timeline"
    spawned = time.time()
    try:
        result = run([*TIMED, "--json", "--inventory", str(inventory), "tenant", "create",
                      slug, "--host", HOST, "--domain", f"{slug}.{HOST}.lab.test",
                      "--image", image],
                     env=child_env(BENCH_TIMELINE=str(timeline)), timeout=900)
        ended = spawned + result.seconds
    finally:
        destroy = run([*OMNI, "--inventory", str(inventory), "tenant", "destroy", slug,
                       "--yes"], env=child_env(), timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"omni tenant create {slug} failed ({result.returncode}): "
                           f"{result.stdout[-1500:]} {result.stderr[-1500:]}")
    if destroy.returncode != 0:
        say(f"warning: destroy {slug} failed ({destroy.returncode}): {destroy.stdout[-500:]}")
    parsed = lib.parse_timeline(timeline.read_text() if timeline.exists() else "", spawned,
                                ended)
    steps = parsed.steps() or lib.progress_steps(result.stderr)
    health = result.envelope().get("data", {}).get("health", {}).get("seconds")
    return Create(slug, path, result.seconds, steps, parsed.phases(), health,
                  parsed.remote_commands())


# ---------------------------------------------------------------- the server work


def setup(lab: Lab, image: str) -> None:
    """Untimed: scratch dir, role, a Redis for the Medusa containers, the onboarding script,
    certbot's and the raw client's ACME accounts."""
    lab.redis_port, lab.app_port, lab.small_port = lab.free_ports(3)
    q = shlex.quote
    script = render("medusa/onboard.js.j2", slug=lab.prefix)
    acme = lab.host.acme
    lab.check(f"""
mkdir -p -m 700 "$S"
cat >"$S/onboard.js" <<'OMNI_BENCH_EOF'
{script}
OMNI_BENCH_EOF
chmod 644 "$S/onboard.js"
psqlq -c "CREATE ROLE {lab.role} LOGIN PASSWORD '{lab.role_password}'"
docker run -d --name {lab.prefix}-redis --network host {q(lab.host.redis_image)} \
  --bind {q(lab.host.bind_address)} --port {lab.redis_port} \
  --requirepass {lab.redis_password} --save '' --appendonly no >/dev/null
docker image inspect -f '{{{{.Id}}}}' {q(image)} >/dev/null
export REQUESTS_CA_BUNDLE={q(str(acme.ca_bundle))}
{certbot(lab)} register --agree-tos --register-unsafely-without-email >/dev/null 2>&1
""", "setting up the scratch role, Redis and ACME accounts")


def certbot(lab: Lab) -> str:
    q = shlex.quote
    return (f"{q(str(BENCH_VENV / 'bin' / 'certbot'))} --config-dir \"$S/certbot/config\" "
            "--work-dir \"$S/certbot/work\" --logs-dir \"$S/certbot/logs\" "
            f"--server {q(lab.host.acme.directory_url)} --non-interactive")


def template_name(lab: Lab, image: str) -> str | None:
    """The newest ready omni template database of ``image`` on the host, if any."""
    # Not an f-string: ${id:0:12} is expanded by bash on the host.
    query = ("SELECT datname FROM pg_database WHERE datname LIKE "
             "'omni\\_tpl\\_${id:0:12}\\_%' AND datistemplate ORDER BY oid DESC LIMIT 1")
    out = lab.check(f"""
id=$(docker image inspect -f '{{{{.Id}}}}' {shlex.quote(image)}); id=${{id#sha256:}}
psqlq -At -c "{query}"
""", "looking up the template database").stdout.strip()
    return out or None


def medusa_env(lab: Lab, db: str, domain: str) -> str:
    """The env file of the scratch Medusa containers: omni's keys, on host networking."""
    pg, address = lab.host.postgres, lab.host.bind_address
    values = {
        "NODE_ENV": "production",
        "HOST": address,
        "PORT": str(lab.app_port),
        "MEDUSA_BACKEND_URL": f"https://{domain}",
        "DATABASE_URL": (f"postgres://{lab.role}:{lab.role_password}@{pg.host}:{pg.port}/"
                         f"{db}?sslmode={pg.sslmode}"),
        "REDIS_URL": f"redis://:{lab.redis_password}@{address}:{lab.redis_port}/0",
        "JWT_SECRET": secrets.token_hex(24),
        "COOKIE_SECRET": secrets.token_hex(24),
        "STORE_CORS": f"https://{domain}",
        "ADMIN_CORS": f"https://{domain}",
        "AUTH_CORS": f"https://{domain}",
    }
    return "".join(f"{k}={v}\n" for k, v in values.items())


def measure(lab: Lab, path: str, index: int, image: str) -> dict[str, Any]:
    """The server work of one create, each part over its own SSH connection, timed on
    the host. Returns seconds per part, plus certbot's and the raw ACME client's details."""
    q = shlex.quote
    db = f"{lab.prefix}_{path[0]}{index}"
    domain = f"{lab.prefix}-{path[0]}{index}.{HOST}.lab.test"
    address = lab.host.bind_address
    out: dict[str, Any] = {"database": db, "domain": domain}
    img = q(image)
    env_file = f'"$S/{db}.env"'
    try:
        # createdb (the database kept for the containers below)
        if path == "template":
            template = template_name(lab, image)
            if template is None:
                raise RuntimeError(f"no template database of {image} on {HOST}")
            out["template"] = template
            create_sql = (f"CREATE DATABASE {db} OWNER {lab.role} TEMPLATE {template} "
                          "ALLOW_CONNECTIONS false STRATEGY wal_log")
        else:
            create_sql = f"CREATE DATABASE {db} OWNER {lab.role}"
        result = lab.check(f"""
cat >{env_file} <<'OMNI_BENCH_EOF'
{medusa_env(lab, db, domain)}OMNI_BENCH_EOF
chmod 600 {env_file}
mark start
psqlq -c '\\timing on' -c {q(create_sql)}
mark end
""", f"CREATE DATABASE {db}")
        out["createdb"] = lib.psql_ms(result.stdout)[-1] / 1000
        out["createdb_psql_process"] = lib.between(lib.marks(result.stdout), "start", "end")
        if path == "template":
            # What omni does after the copy: open it, hand omni_template's objects over.
            result = lab.check(f"""
psqlq -c "ALTER DATABASE {db} ALLOW_CONNECTIONS true"
psqlq -d {db} -c '\\timing on' -c "REASSIGN OWNED BY omni_template TO {lab.role}"
""", f"hand-over in {db}")
            out["handover"] = lib.psql_ms(result.stdout)[-1] / 1000
        else:
            out["handover"] = 0.0
            result = lab.check(f"""
mark start
docker run --rm --name {lab.prefix}-migrate --network host --env-file {env_file} {img} \
  medusa db:migrate >"$S/{db}-migrate.log" 2>&1 || {{ tail -n 20 "$S/{db}-migrate.log"; exit 1; }}
mark end
""", f"medusa db:migrate on {db}")
            out["migrate"] = lib.between(lib.marks(result.stdout), "start", "end")
        out.setdefault("migrate", 0.0)
        # a small container: docker run -d until Redis answers PING
        result = lab.check(f"""
ping() {{ exec 3<>/dev/tcp/{address}/{lab.small_port} 2>/dev/null || return 1
  printf 'PING\\r\\n' >&3; local line; read -r -t 1 line <&3 || line=; exec 3>&-
  [[ $line == +PONG* ]]; }}
mark start
docker run -d --name {lab.prefix}-small --network host {q(lab.host.redis_image)} \
  --bind {address} --port {lab.small_port} --save '' --appendonly no >/dev/null
mark returned
wait_until 30 ping
mark ready
docker rm -f {lab.prefix}-small >/dev/null
""", "small container start")
        stamps = lib.marks(result.stdout)
        out["small_container"] = lib.between(stamps, "start", "ready")
        out["small_container_run"] = lib.between(stamps, "start", "returned")
        # Medusa: docker run -d until /health answers 200
        result = lab.check(f"""
docker exec {lab.prefix}-redis redis-cli -h {address} -p {lab.redis_port} -a {lab.redis_password} \
  --no-auth-warning flushall >/dev/null
healthy() {{ [[ $(curl -s -o /dev/null -m 2 -w '%{{http_code}}' \
  http://{address}:{lab.app_port}/health) == 200 ]]; }}
mark start
docker run -d --name {lab.prefix}-app --network host --env-file {env_file} {img} >/dev/null
mark returned
wait_until 180 healthy || {{ docker logs --tail 20 {lab.prefix}-app; exit 1; }}
mark healthy
""", f"Medusa start on {db}")
        stamps = lib.marks(result.stdout)
        out["app_run"] = lib.between(stamps, "start", "returned")
        out["app_healthy"] = lib.between(stamps, "start", "healthy")
        # the onboarding one-off (the publishable key), the app running
        result = lab.check(f"""
mark start
docker run --rm --name {lab.prefix}-onboard --network host --env-file {env_file} \
  -e OMNI_TASK=storefront-key -e 'OMNI_KEY_TITLE=Storefront (omni)' \
  -v "$S/onboard.js:/omni/onboard.js:ro" {img} medusa exec /omni/onboard.js \
  >"$S/{db}-onboard.log" 2>&1 || {{ tail -n 20 "$S/{db}-onboard.log"; exit 1; }}
mark end
grep -q OMNI_PUBLISHABLE_KEY= "$S/{db}-onboard.log"
""", f"onboarding one-off on {db}")
        out["oneoff"] = lib.between(lib.marks(result.stdout), "start", "end")
    finally:
        lab.ssh(f"""
docker rm -f {lab.prefix}-app {lab.prefix}-small {lab.prefix}-migrate {lab.prefix}-onboard \
  >/dev/null 2>&1 || true
psqlq -c "DROP DATABASE IF EXISTS {db} WITH (FORCE)"
rm -f {env_file}
""")
    out.update(acme_and_nginx(lab, domain))
    out["ssh_exec"] = exec_cost(lab)
    return out


def exec_cost(lab: Lab, count: int = 7) -> float:
    """Median seconds of one command (``true``) in a new SSH exec channel of one open
    connection (paramiko, as omni uses, but not omni's code): what each remote command
    costs before it does anything."""
    import paramiko

    client = paramiko.SSHClient()
    client.load_host_keys(str(lab.known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(lab.host.address, port=lab.host.port, username=lab.host.user,
                   key_filename=str(lab.host.identity), look_for_keys=False,
                   allow_agent=False, timeout=10)
    try:
        transport = client.get_transport()
        assert transport is not None
        samples = []
        for _ in range(count):
            started = time.perf_counter()
            channel = transport.open_session()
            channel.exec_command("true")
            channel.recv_exit_status()
            channel.close()
            samples.append(time.perf_counter() - started)
    finally:
        client.close()
    return lib.med(samples)


def acme_and_nginx(lab: Lab, domain: str) -> dict[str, Any]:
    """One raw ACME order for ``domain`` (20 ms polls), one certbot order for another fresh
    domain, then a vhost for ``domain`` with the raw order's certificate: ``nginx -t`` +
    reload + until it answers over HTTP and HTTPS (under omni's host nginx lock, so no
    omni run's nginx change interleaves). Each over its own SSH connection."""
    q = shlex.quote
    acme, nginx = lab.host.acme, lab.host.nginx
    python = q(str(BENCH_VENV / "bin" / "python"))
    out: dict[str, Any] = {}
    cert_dir = f"$S/cert-{domain}"
    result = lab.check(
        f"{python} {q(str(REPO / 'bench' / 'acme_order.py'))} "
        f"--directory {q(acme.directory_url)} --ca-bundle {q(str(acme.ca_bundle))} "
        f"--webroot {q(acme.webroot)} --domain {q(domain)} --account-key \"$S/acme-account.json\" "
        f"--out \"{cert_dir}\" --poll {POLL}\n", f"raw ACME order for {domain}")
    stamps = lib.marks(result.stdout)
    out["acme"] = lib.between(stamps, "order", "cert")
    out["acme_account"] = lib.between(stamps, "start", "account")
    out["acme_process"] = lib.between(stamps, "start", "cert")
    other = domain.replace(".", "-certbot.", 1)
    result = lab.check(f"""
export REQUESTS_CA_BUNDLE={q(str(acme.ca_bundle))}
mark start
{certbot(lab)} certonly --webroot -w {q(acme.webroot)} -d {q(other)} --key-type ecdsa \
  >"$S/certbot-{other}.log" 2>&1 || {{ tail -n 20 "$S/certbot-{other}.log"; exit 1; }}
mark end
""", f"certbot order for {other}")
    out["certbot"] = lib.between(lib.marks(result.stdout), "start", "end")
    digest = secrets.token_hex(8)
    vhost = f"{nginx.sites_dir}/{lab.prefix}-{domain.split('.')[0]}.conf"
    conf = f"""# omni create bench scratch vhost (removed at once)
server {{
    listen {nginx.listen_address}:{nginx.http_port};
    server_name {domain};
    location = /.well-known/omni-vhost {{ default_type text/plain; return 200 "{digest}\\n"; }}
    location / {{ return 301 https://$host$request_uri; }}
}}
server {{
    listen {nginx.listen_address}:{nginx.https_port} ssl http2;
    server_name {domain};
    ssl_certificate {cert_dir.replace('$S', lab.scratch)}/fullchain.pem;
    ssl_certificate_key {cert_dir.replace('$S', lab.scratch)}/privkey.pem;
    location = /.well-known/omni-vhost {{ default_type text/plain; return 200 "{digest}\\n"; }}
}}
"""
    test = " ".join(q(a) for a in nginx.test_command)
    reload = " ".join(q(a) for a in nginx.reload_command)
    address = nginx.listen_address
    lock = f"{lab.host.state_dir}/locks/nginx.lock"
    root_ca = q(str(lab.host.health.ca_bundle))
    result = lab.check(f"""
http_live() {{ [[ $(curl -s -m 2 -H 'Host: {domain}' \
  http://{address}:{nginx.http_port}/.well-known/omni-vhost) == {digest} ]]; }}
https_live() {{ [[ $(curl -s -m 2 --cacert {root_ca} \
  --resolve {domain}:{nginx.https_port}:{address} \
  https://{domain}:{nginx.https_port}/.well-known/omni-vhost) == {digest} ]]; }}
export -f http_live https_live
exec 9>>{q(lock)}
flock -w 120 9
mark start
cat >{q(vhost)} <<'OMNI_BENCH_EOF'
{conf}OMNI_BENCH_EOF
{test} 2>"$S/nginx-test.log" || {{ rm -f {q(vhost)}; cat "$S/nginx-test.log"; exit 1; }}
mark tested
{reload}
mark reloaded
ok=0; wait_until 20 http_live && wait_until 20 https_live && ok=1
mark live
rm -f {q(vhost)}
{test} 2>/dev/null && {reload}
[[ $ok == 1 ]]
""", f"nginx reload for {domain}")
    stamps = lib.marks(result.stdout)
    out["nginx"] = lib.between(stamps, "start", "live")
    out["nginx_test"] = lib.between(stamps, "start", "tested")
    out["nginx_reload"] = lib.between(stamps, "tested", "reloaded")
    return out


def cleanup(lab: Lab, slugs: Sequence[str]) -> None:
    """Remove everything the bench made on the host: containers, databases, the role,
    vhosts, scratch files, and what omni leaves of destroyed tenants (local dumps, empty
    lock files)."""
    q = shlex.quote
    host = lab.host
    dumps = " ".join(f"{q(host.postgres.dump_dir)}/{s}-*.dump" for s in slugs)
    locks = " ".join(f"{q(host.state_dir)}/locks/tenant-{s}.lock" for s in slugs)
    mine = f"SELECT datname FROM pg_database WHERE datname LIKE '{lab.prefix}\\_%'"  # noqa: S608
    lab.ssh(f"""
set +e
ids=$(docker ps -aq --filter name=^{lab.prefix}-)
[[ -n $ids ]] && docker rm -f $ids >/dev/null
for db in $(psqlq -At -c "{mine}"); do
  psqlq -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"
done
psqlq -c "DROP ROLE IF EXISTS {lab.role}"
rm -f {q(host.nginx.sites_dir)}/{lab.prefix}-*.conf {dumps} {locks}
rm -rf "$S"
""")


# ---------------------------------------------------------------- profile


def profile(lab: Lab, image: str, slug: str) -> dict[str, Any]:
    """One template-path create under py-spy (100 Hz, idle included, threads apart), then
    its destroy. Where the main thread's wall time goes: by phase and by innermost line."""
    inventory = lab.inventories["template"]
    raw = lab.root / "profile.txt"
    spy = BENCH_VENV / "bin" / "py-spy"
    try:
        result = run([str(spy), "record", "--idle", "--threads", "--format", "raw",
                      "--rate", str(PROFILE_RATE), "-o", str(raw), "--", *OMNI,
                      "--inventory", str(inventory), "tenant", "create", slug, "--host",
                      HOST, "--domain", f"{slug}.{HOST}.lab.test", "--image", image],
                     env=child_env(), timeout=900)
    finally:
        run([*OMNI, "--inventory", str(inventory), "tenant", "destroy", slug, "--yes"],
            env=child_env(), timeout=600)
    if result.returncode != 0 or not raw.exists():
        return {"error": f"py-spy run failed ({result.returncode}): {result.stderr[-800:]}"}
    stacks = lib.main_thread_stacks(raw.read_text())
    total = sum(n for _, n in stacks)
    scale = result.seconds / total if total else 0.0
    phases = lib.attribute(stacks, PROFILE_PHASES)
    leaves = lib.top_frames(stacks, 12)
    # The innermost line of omni's own logic (not its transport or host plumbing).
    logic = lib.top_frames(stacks, 25, r"(^|[ (/])omni/(?!transport/|hosts/)")
    return {
        "wall": result.seconds,
        "samples": total,
        "steps": lib.progress_steps(result.stderr),
        "phases": {k: round(v * scale, 3) for k, v in sorted(phases.items(),
                                                               key=lambda kv: -kv[1])},
        "leaves": [(label, round(n * scale, 3)) for label, n in leaves],
        "omni_lines": [(label, round(n * scale, 3)) for label, n in logic],
    }


# The phase of each sample of the main thread: the first rule all of whose patterns match
# some frame (omni's phase functions, then, inside apply, the resource's module).
_APPLY = r"^apply_plan \(.*omni/engine/engine\.py"
PROFILE_PHASES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("health gate", (r"^health_gate \(",)),
    ("verify: re-observe every resource", (r"^verify \(.*omni/engine/engine\.py",)),
    ("step acme.certificate", (_APPLY, r"omni/resources/certificate\.py")),
    ("step nginx.vhost", (_APPLY, r"omni/resources/vhost\.py")),
    ("step medusa.publishable_key (waits for the app, then medusa exec)",
     (_APPLY, r"omni/resources/storefront_key\.py")),
    ("step postgres.database", (_APPLY, r"omni/resources/templates\.py")),
    ("steps medusa.app, gateways, Redis", (_APPLY, r"omni/resources/containers\.py")),
    ("other steps (files, role, secrets)", (_APPLY,)),
    ("observe + plan", (r"^plan_tenant \(",)),
    ("SSH connect", (r"^open_host_session \(",)),
    ("tenant lock, audit", (r"omni/hosts/lock\.py|omni/audit\.py",)),
    ("imports", (r"^_find_and_load \(",)),
)


# ---------------------------------------------------------------- report


def work_of(sample: dict[str, Any]) -> lib.Irreducible:
    return lib.Irreducible(**{f: float(sample[f]) for f in lib.Irreducible.__dataclass_fields__})


def report(results: dict[str, Any]) -> str:
    facts = results["machine"]
    lines = [
        "## Tenant create, step by step, against the irreducible server work "
        "(`make bench-create`, issue 12 item 1)",
        "",
        f"`python bench/create_breakdown.py --runs {results['runs']} --image "
        f"{results['image']}` on {facts['date']}: {facts['cores']} cores ({facts['cpu']}), "
        f"{facts['memory_gib']} GiB RAM, Linux {facts['kernel']}, Python {facts['python']}, "
        f"commit `{facts['commit']}`; 1-minute load average {results['load_before'][0]:.1f} "
        f"before, {results['load_after'][0]:.1f} after (min {min(results['loads']):.1f}, "
        f"max {max(results['loads']):.1f} between runs); the whole bench took "
        f"{results['seconds']:.0f} s. Host dev of the lab (sshd, Postgres 15, Docker, nginx "
        "on loopback of this one machine; Pebble as the ACME server, `PEBBLE_VA_NOSLEEP`). "
        "Each create is a new real Medusa tenant (`omni-lab/medusa:v1`); the two paths are "
        "interleaved, and the server work is measured right after each create, so both see "
        "the same load. Seconds; min / median / max over the runs. Raw numbers: "
        "[`create_results.json`](create_results.json).",
        "",
    ]
    if results.get("warmups"):
        walls = ", ".join(f"{w['wall']:.1f} s" for w in results["warmups"])
        lines += [f"The image's template database was missing on dev, so the bench first made "
                  f"it with a template-path create ({walls}; not counted below).", ""]
    for path in PATHS:
        rows = [lib.Breakdown(c["wall"], c["steps"], work_of(w))
                for c, w in zip(results["creates"][path], results["work"][path], strict=True)]
        if not rows:
            continue
        lines += [f"### {path.capitalize()} path", "",
                  lib.breakdown_table(rows, STEP_ORDER), ""]
        wall = lib.med([r.wall for r in rows])
        overhead = lib.med([r.overhead_critical for r in rows])
        serial = lib.med([r.overhead_serial for r in rows])
        outside = lib.med([r.overhead_outside_medusa for r in rows])
        target = TARGETS["template_create" if path == "template" else "create"]
        lines += [
            "- " + lib.target_line("whole create", wall, TARGETS["create"]),
            *(["- " + lib.target_line("template create", wall, target)]
              if path == "template" else []),
            "- " + lib.target_line("omni's overhead (wall - server work on omni's critical "
                                   "path)", overhead, TARGETS["overhead"])
            + f"; against the serial sum of the server work: median {serial:.2f} s; "
            f"outside Medusa's own work: median {outside:.2f} s",
            "",
        ]
    lines += ["### omni's own time outside the steps, by phase", "",
              "From inside the CLI process (`bench/omni_timed.py`: events recorded around "
              "omni's functions, omni unchanged). The phases add up to the wall time; "
              "`apply` holds the steps above.", ""]
    phase_names: list[str] = []
    for path in PATHS:
        for c in results["creates"][path]:
            phase_names += [p for p in c["phases"] if p not in phase_names]
    lines.append(markdown_table(
        ["phase", *(f"{p} s (min / med / max)" for p in PATHS)],
        [(name, *(lib.stats_cell([c["phases"].get(name) for c in results["creates"][p]])
                  for p in PATHS)) for name in phase_names],
        right=[False, True, True]))
    lines += ["", "### Commands omni runs on the host", "",
              "Counted inside the CLI process (`bench/omni_timed.py` wraps omni's SSH "
              "transport). Each waited-for command is an SSH exec channel: sshd starts a "
              "process on the host for it. Beside it, what one such exec of `true` costs on "
              "an open connection (paramiko, not omni's code, 7 tries, median), measured in "
              "the same run.", ""]
    remote_rows = []
    for label, key, digits in (
            ("commands run and waited for (SSH exec)", "runs", 0),
            ("their total seconds", "run_seconds", 2),
            ("host locks taken (each a long-lived `flock` process)", "locks", 0),
            ("seconds to take them (spawn, `flock`, any wait for another holder)",
             "lock_seconds", 2),
            ("long-lived remote processes (locks, docker dial-stdio, socat)", "streams", 0)):
        remote_rows.append((label, *(lib.stats_cell(
            [float(c["remote"][key]) for c in results["creates"][p]], digits) for p in PATHS)))
    remote_rows.append(("one SSH exec of `true` on an open connection (not omni)",
                        *(lib.stats_cell([w["ssh_exec"] for w in results["work"][p]])
                          for p in PATHS)))
    lines.append(markdown_table(["what", *(f"{p} (min / med / max)" for p in PATHS)],
                                remote_rows, right=[False, True, True]))
    for path in PATHS:
        if results["creates"][path]:
            last = results["creates"][path][-1]["remote"]
            runs = ", ".join(f"`{k}` {v}" for k, v in sorted(
                last["by_program"].items(), key=lambda kv: -kv[1]))
            locks = ", ".join(f"`{k}` {v}" for k, v in sorted(
                last["locks_by_name"].items(), key=lambda kv: -kv[1]))
            lines += ["", f"Last {path} create: commands {runs}; locks {locks}."]
    step_rows = []
    for step in (*STEP_ORDER, "(outside steps)"):
        cells = []
        for path in PATHS:
            seen = [c["remote"]["by_step"].get(step) for c in results["creates"][path]]
            counts = [float(x["runs"]) if x else 0.0 for x in seen]
            secs = [float(x["seconds"]) if x else 0.0 for x in seen]
            cells.append(f"{lib.med(counts):.0f} / {lib.med(secs):.2f}" if seen else "-")
        if any(not c.startswith("0 /") and c != "-" for c in cells):
            step_rows.append((f"`{step}`" if not step.startswith("(") else step, *cells))
    lines += ["", "Where the waited-for commands are (medians: count / seconds):", "",
              markdown_table(["step", *(f"{p}" for p in PATHS)], step_rows,
                             right=[False, True, True])]
    lines += ["", "### ACME: omni's step, the raw protocol and certbot", ""]
    acme_rows = []
    for path in PATHS:
        creates, work = results["creates"][path], results["work"][path]
        acme_rows += [
            (f"omni `acme.certificate` step ({path} path)",
             lib.stats_cell([c["steps"].get("acme.certificate") for c in creates])),
            ("raw order: new order to certificate, 20 ms polls",
             lib.stats_cell([w["acme"] for w in work])),
            ("raw client process: start, directory, account, order",
             lib.stats_cell([w["acme_process"] for w in work])),
            ("`certbot certonly --webroot` (whole process, its 1 s polls)",
             lib.stats_cell([w["certbot"] for w in work])),
        ]
    lines.append(markdown_table(["what", "s (min / med / max)"], acme_rows,
                                right=[False, True]))
    lines += ["", *HOW_MEASURED, ""]
    prof = results.get("profile")
    if prof and "phases" in prof:
        lines += [
            "### Profile of one template-path create (py-spy)",
            "",
            f"`py-spy record --idle --threads --rate {PROFILE_RATE}` of `omni tenant create` "
            f"(template path, wall {prof['wall']:.1f} s, {prof['samples']} samples of the "
            "main thread, scaled to the wall time; idle samples included, so waits show). "
            "By phase (innermost match):",
            "",
            markdown_table(["phase", "s"], list(prof["phases"].items()), right=[False, True]),
            "",
            "Innermost Python lines (where the main thread was when sampled; a C call such "
            "as `time.sleep` or a socket read shows as the line calling it):",
            "",
            markdown_table(["line", "s"], prof["leaves"], right=[False, True]),
            "",
            "Innermost line of omni's own logic (outside `omni/transport` and `omni/hosts`, "
            "so a remote command or a lock shows as the omni line that asked for it):",
            "",
            markdown_table(["line", "s"], prof["omni_lines"], right=[False, True]),
            "",
        ]
    elif prof:
        lines += [f"Profile: {prof['error']}", ""]
    return "\n".join(lines).rstrip() + "\n"


HOW_MEASURED = [
    "How the server work is measured (on host dev, each part over one SSH connection of "
    "its own, timed there with bash `$EPOCHREALTIME`, so SSH set-up is not counted):",
    "",
    "- **createdb**: psql's `\\timing` of `CREATE DATABASE <db> OWNER <role>` (migrating "
    "path) or `CREATE DATABASE <db> OWNER <role> TEMPLATE omni_tpl_<image>_<recipe> "
    "ALLOW_CONNECTIONS false STRATEGY wal_log` (template path, omni's statement); plus, on "
    "the template path, the hand-over omni also does, `REASSIGN OWNED BY omni_template`, "
    "timed the same way. psql's own start and connection are not counted.",
    "- **migrate**: `docker run --rm --network host --env-file ... <image> medusa db:migrate` "
    "on a fresh empty database owned by a scratch role, against the host's Postgres "
    "directly. omni runs it in the tenant's network namespace (its gateway forwards "
    "Postgres over a Unix socket): the gateway hop is not in this figure, so it counts as "
    "omni's overhead. No memory/CPU limits (omni sets them).",
    "- **small container**: `docker run -d` of `omni-lab/redis:7` on host networking until "
    "it answers `PING` (20 ms polls); counted three times, for omni's gateway, publish and "
    "Redis containers.",
    "- **start to healthy**: `docker run -d` of the Medusa image with the tenant's "
    "environment (host networking, the migrated or copied scratch database, a scratch "
    "Redis) until `GET /health` on its port answers 200 (curl every 20 ms). omni starts "
    "the app in `medusa.app` and only waits for it later (`medusa.publishable_key` waits "
    "for an HTTP answer, the health gate for 200 through nginx), so the boot overlaps the "
    "certificate and vhost steps: hence the critical path below.",
    "- **onboarding one-off**: `docker run --rm ... medusa exec /omni/onboard.js` with "
    "omni's rendered script and `OMNI_TASK=storefront-key`, the app running (what "
    "`medusa.publishable_key` runs once the app answers).",
    "- **ACME order**: `bench/acme_order.py` (the `acme` library from PyPI, no omni code) "
    "run on the host: new order, challenge file into the host's webroot, answer, poll the "
    "authorization and the order every 20 ms, download: \"new order to certificate\". "
    "Pebble validates over the lab's DNS (`*.dev.lab.test` -> 127.0.0.2) through the "
    "host's nginx catch-all webroot. The acme library's own `poll_and_finalize` (what "
    "omni's client and certbot use) sleeps 1 s before each poll. certbot 5.x `certonly "
    "--webroot` (PyPI, bench venv, account registered beforehand) is timed as a whole "
    "process for reference.",
    "- **nginx reload**: a vhost like omni's (HTTP + HTTPS with the raw order's "
    "certificate, the `/.well-known/omni-vhost` digest location) written to the sites "
    "directory under omni's host nginx lock, then the host's `nginx -t`, `nginx -s "
    "reload`, and curl every 20 ms until HTTP and then HTTPS (verified against Pebble's "
    "root) answer the new digest.",
    "- **Critical path** = createdb + hand-over + migrate + 3 x small container + "
    "max(start to healthy, ACME + nginx) + onboarding one-off: the same work in omni's "
    "order with the app's boot overlapping the certificate and vhost steps, as omni's "
    "order allows. **Serial sum** adds the boot and ACME + nginx instead (the issue's "
    "definition; it credits omni for overlapping work it did not have to wait for). "
    "Overhead = wall - that. Steps without a measured counterpart (file writes, single "
    "SQL statements) count fully as overhead. **Outside Medusa's own work** = omni's "
    "non-step time + each step's excess over its counterpart, leaving out "
    "`medusa.migrations` and `medusa.publishable_key` (Medusa's CPU-bound migrations, boot "
    "and `medusa exec`, whose times swing by several seconds from one run to the next on a "
    "loaded 2-core machine): steadier, but it also counts steps that run while the app boots "
    "(`acme.certificate`, `nginx.vhost`), so it is not all on the wall-clock path.",
    "- **Remote commands and locks**: counted by `bench/omni_timed.py` around omni's "
    "`SSHTransport.run` / `open_process` and `HostSession.lock` (program name only, never "
    "arguments). The SSH exec cost beside them: paramiko (not omni's code) opening a "
    "session channel on one open connection and running `true`, 7 times, median.",
]


# ---------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--image", default="omni-lab/medusa:v1")
    parser.add_argument("--write", action="store_true",
                        help="write bench/RESULTS.md (section create) and "
                             "bench/create_results.json")
    parser.add_argument("--no-profile", dest="profile", action="store_false",
                        help="skip the py-spy profile of one template-path create")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if not (LAB_INVENTORY / "hosts.yaml").is_file():
        raise SystemExit("bench: no lab inventory: run `make lab` first")
    bench_venv()
    started = time.perf_counter()
    facts = machine_facts()
    prefix = f"cb{secrets.token_hex(3)}"
    root = Path(tempfile.mkdtemp(prefix=f"omni-bench-{prefix}-"))
    lab = Lab(root, prefix)
    results: dict[str, Any] = {
        "machine": facts, "runs": args.runs, "image": args.image, "prefix": prefix,
        "load_before": list(os.getloadavg()), "loads": [os.getloadavg()[0]],
        "creates": {p: [] for p in PATHS}, "work": {p: [] for p in PATHS}, "warmups": [],
    }
    slugs: list[str] = []
    say(f"prefix {prefix}; scratch {root}")
    try:
        setup(lab, args.image)
        for index in range(args.runs):
            for path in PATHS:
                if path == "template" and template_name(lab, args.image) is None:
                    slug = f"{prefix}w{index}"
                    slugs.append(slug)
                    say(f"no template database of {args.image}: warm-up create {slug}")
                    warm = omni_create(lab, "template", slug, args.image)
                    results["warmups"].append(asdict(warm))
                slug = f"{prefix}{path[0]}{index}"
                slugs.append(slug)
                say(f"run {index + 1}/{args.runs}, {path} path: omni tenant create {slug}")
                create = omni_create(lab, path, slug, args.image)
                say(f"  wall {create.wall:.2f} s; measuring the server work")
                work = measure(lab, path, index, args.image)
                results["creates"][path].append(asdict(create))
                results["work"][path].append(work)
                results["loads"].append(os.getloadavg()[0])
                say(f"  server work: {work_of(work)}")
        if args.profile:
            slug = f"{prefix}p0"
            slugs.append(slug)
            say(f"profiling a template-path create ({slug}) with py-spy")
            results["profile"] = profile(lab, args.image, slug)
    except Exception as exc:  # report what was measured before it
        results["error"] = f"{type(exc).__name__}: {exc}"
        say(f"error: {results['error']}")
    finally:
        cleanup(lab, slugs)
        shutil.rmtree(root, ignore_errors=True)
    results["load_after"] = list(os.getloadavg())
    results["seconds"] = time.perf_counter() - started
    text = report(results)
    if results.get("error"):
        text += f"\n**The run stopped early**: {results['error']}\n"
    print(text)
    if args.write:
        RESULTS_JSON.write_text(json.dumps(results, indent=1, default=str) + "\n")
        RESULTS_MD.write_text(replace_section(RESULTS_MD.read_text(), "create", text))
        say(f"wrote {RESULTS_MD} and {RESULTS_JSON}")


if __name__ == "__main__":
    main()
