"""The thorough per-tenant checks of ``omni health-check``. Read-only.

Each check returns a :class:`Check`: ``pass``, ``warn`` or ``fail``, a one-line detail and
its latency. A check never raises for what it finds; an ``OmniError`` while looking (e.g. a
command that failed) is that check's ``fail``. ``HostUnreachable`` is let through: the fleet
runner turns it into ``unreachable`` for every tenant of the host.

- ``app``: the container exists, runs, is not in a restart loop, runs the tenant's image;
- ``redis``: the tenant's Redis answers an authenticated ``PING``;
- ``database``: the tenant's own role connects to its own database and runs ``SELECT 1``;
- ``upstream``: ``GET /health`` on the app port, from the host, answers 200;
- ``https``: ``GET https://<domain>/health`` through nginx, SNI, verified, for every domain;
- ``certificate``: days to expiry of the certificate on disk, covering every domain;
- ``config``: vhost, env file and Redis config are the bytes omni renders now.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal, Protocol

from omni.errors import HostUnreachable, OmniError

# What the checks use (jinja2, cryptography, the probes) is imported in the check that needs
# it: a health-check of no tenant, and modules wanting only CHECKS, do without.
if TYPE_CHECKING:
    import socket

    from cryptography import x509

    from omni.hosts.docker import ContainerInfo
    from omni.hosts.session import HostSession
    from omni.tenant.spec import TenantSpec
    from omni.transport.base import Stream

CheckStatus = Literal["pass", "warn", "fail"]
CHECKS = ("app", "redis", "database", "upstream", "https", "certificate", "config")
# A container up for less than this, after restarts, is taken to be in a restart loop.
MIN_UPTIME_SECONDS = 10.0
_TIMEOUT = 5.0


@dataclass(frozen=True)
class Check:
    name: str
    status: CheckStatus
    detail: str
    seconds: float = 0.0

    def to_dict(self) -> dict[str, object]:
        return {
            "check": self.name,
            "status": self.status,
            "detail": self.detail,
            "seconds": round(self.seconds, 3),
        }


Finding = tuple[CheckStatus, str]


class Containers(Protocol):
    """Where ``app`` looks a container up: the engine itself (a request per container), or
    a :class:`ContainerSnapshot` of the whole host taken once per run."""

    def container(self, name: str) -> ContainerInfo | None: ...
    def image_id(self, ref: str) -> str | None: ...


class ContainerSnapshot:
    """The host's app containers and their images as one ``docker inspect`` saw them; an
    image it did not resolve is asked of the engine, once."""

    def __init__(
        self, session: HostSession, containers: Sequence[str], images: Sequence[str]
    ) -> None:
        from omni.hosts.docker import inspect_host

        docker = session.host.docker
        seen = inspect_host(
            session.transport, session.name, cli=docker.cli, socket_path=docker.socket,
            containers=containers, images=sorted(set(images)),
        )
        self._containers = seen.containers
        self._image_ids: dict[str, str | None] = dict(seen.image_ids)
        self._session = session
        self._guard = threading.Lock()

    def container(self, name: str) -> ContainerInfo | None:
        return self._containers.get(name)

    def image_id(self, ref: str) -> str | None:
        with self._guard:
            if ref not in self._image_ids:
                self._image_ids[ref] = self._session.docker().image_id(ref)
            return self._image_ids[ref]


def run_checks(
    session: HostSession, spec: TenantSpec, containers: Callable[[], Containers] | None = None
) -> list[Check]:
    """Every check of :data:`CHECKS`, in order, for one tenant. ``containers`` gives where
    ``app`` looks (default: the engine, one request per container)."""
    look_in = containers or session.docker
    probes: dict[str, Callable[[], Finding]] = {
        "app": lambda: check_app(look_in(), spec),
        "redis": lambda: check_redis(session, spec),
        "database": lambda: check_database(session, spec),
        "upstream": lambda: check_upstream(session, spec),
        "https": lambda: check_https(spec),
        "certificate": lambda: check_certificate(session, spec),
        "config": lambda: check_config(session, spec),
    }
    redact = spec.redactor().text
    return [_timed(name, probes[name], redact) for name in CHECKS]


def _timed(name: str, probe: Callable[[], Finding], redact: Callable[[str], str]) -> Check:
    started = time.monotonic()
    try:
        status, detail = probe()
    except HostUnreachable:
        raise
    except OmniError as exc:
        status, detail = "fail", exc.message
    except Exception as exc:  # e.g. a psycopg error mid-query: still this check's finding
        status, detail = "fail", f"{type(exc).__name__}: {exc}"
    return Check(name, status, redact(" ".join(detail.split())), time.monotonic() - started)


def _since(rfc3339: str, now: datetime) -> float | None:
    """Seconds since an engine timestamp (nanosecond precision, 'Z'), None if unparseable."""
    if not rfc3339 or rfc3339.startswith("0001-"):
        return None
    text = rfc3339.rstrip("Z")
    head, _, fraction = text.partition(".")
    try:
        started = datetime.fromisoformat(head).replace(tzinfo=UTC)
    except ValueError:
        return None
    seconds = (now - started).total_seconds()
    return seconds + (float(f"0.{fraction[:6]}") if fraction.isdigit() else 0.0)


def check_app(docker: Containers, spec: TenantSpec) -> Finding:
    found = docker.container(spec.app_container)
    if found is None:
        return "fail", f"container {spec.app_container} does not exist"
    if not found.running or found.status != "running":
        return "fail", f"container {spec.app_container} is {found.status or 'not running'}"
    uptime = _since(found.started_at, datetime.now(UTC))
    if found.restart_count and (uptime is None or uptime < MIN_UPTIME_SECONDS):
        return "fail", (
            f"restart loop: {found.restart_count} restarts, up {uptime or 0:.0f}s"
        )
    want = docker.image_id(spec.tenant.image)
    if found.image != spec.tenant.image or (want is not None and found.image_id != want):
        return "fail", (
            f"runs {found.image} ({found.image_id.removeprefix('sha256:')[:12]}), the tenant "
            f"file names {spec.tenant.image}"
        )
    restarts = f", {found.restart_count} restarts" if found.restart_count else ""
    return "pass", f"running {found.image}, up {uptime or 0:.0f}s{restarts}"


def _connect(session: HostSession, address: str, port: int) -> Stream | socket.socket | str:
    """A TCP stream to ``address:port`` from the host, or why not (refused, timed out)."""
    try:
        return session.transport.open_tcp(address, port, timeout=_TIMEOUT)
    except OSError as exc:
        return str(exc) or type(exc).__name__
    except HostUnreachable:
        raise
    except OmniError as exc:
        return exc.message


def _resp_line(stream: object, buffer: bytearray) -> bytes:
    recv: Callable[[int], bytes] = stream.recv  # type: ignore[attr-defined]
    while b"\r\n" not in buffer:
        chunk = recv(1024)
        if not chunk:
            raise OSError("connection closed")
        buffer.extend(chunk)
    line, _, rest = bytes(buffer).partition(b"\r\n")
    buffer[:] = rest
    return line


def _resp_command(*parts: str) -> bytes:
    out = [f"*{len(parts)}\r\n".encode()]
    for part in parts:
        data = part.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def check_redis(session: HostSession, spec: TenantSpec) -> Finding:
    """``AUTH <password>`` then ``PING`` through the tenant's gateway socket (Redis is
    reachable from nowhere else); the password is sent only to Redis and never appears in
    the detail."""
    from omni.tenant.network import open_socket, redis_socket

    where = "redis via the tenant's gateway"
    try:
        stream = open_socket(session, redis_socket(spec))
    except HostUnreachable:
        raise
    except OmniError as exc:
        return "fail", f"{where}: cannot connect ({exc.message})"
    buffer = bytearray()
    try:
        stream.settimeout(_TIMEOUT)
        stream.sendall(_resp_command("AUTH", spec.secrets.redis_password) + _resp_command("PING"))
        auth = _resp_line(stream, buffer)
        if not auth.startswith(b"+OK"):
            reason = auth.decode("utf-8", "replace")[:80]
            return "fail", f"{where}: authentication refused ({reason})"
        pong = _resp_line(stream, buffer)
    except OSError as exc:
        return "fail", f"{where}: {exc or type(exc).__name__}"
    finally:
        stream.close()
    if pong != b"+PONG":
        return "fail", f"{where}: PING answered {pong.decode('utf-8', 'replace')[:80]}"
    return "pass", f"PONG from {where} (authenticated)"


def check_database(session: HostSession, spec: TenantSpec) -> Finding:
    with session.connect_as(spec.role_name, spec.secrets.db_password, spec.db_name) as conn:
        row = conn.execute("SELECT 1").fetchone()
    if row != (1,):
        return "fail", f"SELECT 1 as {spec.role_name} answered {row!r}"
    return "pass", f"{spec.role_name} connects to {spec.db_name}"


def check_upstream(session: HostSession, spec: TenantSpec) -> Finding:
    path = spec.host.health.path
    where = f"http://{spec.bind_address}:{spec.app_port}{path}"
    stream = _connect(session, spec.bind_address, spec.app_port)
    if isinstance(stream, str):
        return "fail", f"{where}: cannot connect ({stream})"
    try:
        stream.settimeout(_TIMEOUT)
        stream.sendall(
            f"GET {path} HTTP/1.0\r\nHost: {spec.primary_domain}\r\n"
            "User-Agent: omni-health-check\r\n\r\n".encode()
        )
        status_line = _resp_line(stream, bytearray())
    except OSError as exc:
        return "fail", f"{where}: {exc or type(exc).__name__}"
    finally:
        stream.close()
    parts = status_line.decode("latin-1").split()
    status = parts[1] if len(parts) > 1 else status_line.decode("latin-1")[:40]
    if status != "200":
        return "fail", f"{where} answered {status}"
    return "pass", f"{where} answered 200"


def check_https(spec: TenantSpec) -> Finding:
    from omni.probe import ProbeError, https_get
    from omni.resources.vhost import nginx_address

    host = spec.host
    answers = []
    for domain in spec.tenant.domains:
        try:
            answer = https_get(
                nginx_address(spec),
                host.nginx.https_port,
                domain,
                host.health.path,
                host.health.ca_bundle,
                timeout=_TIMEOUT,
            )
        except ProbeError as exc:
            return "fail", str(exc)
        if answer.status != 200:
            return "fail", f"https://{domain}{host.health.path} answered {answer.status}"
        answers.append(domain)
    return "pass", f"200 over verified TLS for {', '.join(answers)}"


def check_certificate(session: HostSession, spec: TenantSpec) -> Finding:
    raw = session.transport.read_file(spec.fullchain_path)
    if raw is None:
        return "fail", f"no certificate at {spec.fullchain_path}"
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(raw)
    except ValueError:
        return "fail", f"{spec.fullchain_path} does not parse"
    return certificate_finding(
        cert, spec.tenant.domains, datetime.now(UTC), spec.host.acme.renew_before_days
    )


def certificate_finding(
    cert: x509.Certificate, domains: list[str], now: datetime, renew_before_days: int
) -> Finding:
    """Pure: fail when expired, not yet valid or not covering a domain; warn inside the
    renewal window; pass otherwise. The detail carries the days left."""
    from cryptography import x509

    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = set(sans.value.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = set()
    expires = cert.not_valid_after_utc
    days = (expires - now) / timedelta(days=1)
    when = f"expires {expires:%Y-%m-%d} ({days:.0f} days)"
    missing = [d for d in domains if d not in names]
    if missing:
        return "fail", f"does not cover {', '.join(missing)}; {when}"
    if now < cert.not_valid_before_utc:
        return "fail", f"not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M}Z"
    if now >= expires:
        return "fail", f"expired {expires:%Y-%m-%d}"
    if days <= renew_before_days:
        return "warn", f"{when}: inside the {renew_before_days}-day renewal window"
    return "pass", when


def check_config(session: HostSession, spec: TenantSpec) -> Finding:
    from omni.render import render_vhost, seal_intact, vhost_intact
    from omni.tenant.resources import render_env_file, render_redis_conf

    files = (
        ("vhost", spec.vhost_path, render_vhost(spec), vhost_intact),
        ("env", spec.env_path, render_env_file(spec), seal_intact),
        ("redis", spec.redis_conf_path, render_redis_conf(spec), seal_intact),
    )
    edited, stale = [], []
    for label, path, desired, intact in files:
        current = session.transport.read_file(path)
        if current == desired.encode():
            continue
        if current is None:
            edited.append(f"{label} {path} is missing")
        elif intact(current.decode("utf-8", "replace")):
            stale.append(f"{label} {path} is stale (inventory or templates changed since)")
        else:
            edited.append(f"{label} {path} was edited by hand")
    if edited:
        return "fail", "; ".join(edited + stale) + "; `omni tenant create` restores it"
    if stale:
        return "warn", "; ".join(stale) + "; `omni tenant create` applies it"
    return "pass", "vhost, env and redis config as omni renders them"
