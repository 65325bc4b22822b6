"""``omni hosts check``: is each server ready for omni? Read-only.

Per host, in order: ``reachable`` (TCP + SSH handshake), ``host_key`` (the server's key is
one of the inventory's pins), ``login`` (the identity is accepted), ``docker`` (engine
version over the pinned connection), ``gateway`` (the tenant gateway image and socat),
``nginx`` (the host's ``nginx.test_command``),
``postgres`` (server version through the tunnel), ``disk`` (free space on ``state_dir``)
and ``acme`` (the ACME directory answers, fetched from the machine running omni).

Hosts run concurrently; every check has its own deadline; a failed host never stops the
others. Remote checks after a failed connection are reported as skipped.
"""

from __future__ import annotations

import contextlib
import json
import ssl
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from omni.errors import (
    AuthenticationFailed,
    CheckFailed,
    HostKeyMismatch,
    HostUnreachable,
    OmniError,
)
from omni.output.result import Result

if TYPE_CHECKING:
    from omni.hosts.docker import DockerEngine
    from omni.inventory.loader import Inventory
    from omni.inventory.models import Host
    from omni.transport.base import Transport

COMMAND = "hosts check"
CHECKS = ("reachable", "host_key", "login", "docker", "gateway", "nginx", "postgres", "disk",
          "acme")
MIN_FREE_BYTES = 1 << 30  # below this, a deploy (images, dumps) is likely to fail
GIB = float(1 << 30)

RowStatus = Literal["ok", "fail", "skip"]
T = TypeVar("T")


class Session(Protocol):
    """What this use case needs of :class:`omni.hosts.session.HostSession`."""

    @property
    def transport(self) -> Transport: ...
    def postgres(self, dbname: str = ...) -> Any: ...
    def docker(self) -> DockerEngine: ...
    def close(self) -> None: ...


SessionFactory = Callable[["Host", float], Session]  # (host, connect_timeout) -> session


@dataclass(frozen=True)
class Timeouts:
    connect: float = 10.0
    command: float = 20.0  # nginx -t, df, docker, postgres
    acme: float = 10.0


@dataclass(frozen=True)
class CheckRow:
    check: str
    status: RowStatus
    detail: str
    code: str | None = None  # the error code behind a failure (e.g. host_unreachable)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def _open_host_session(host: Host, connect_timeout: float) -> Session:
    from omni.hosts.session import HostSession

    return HostSession(host, connect_timeout=connect_timeout)


def _one_line(text: str, limit: int = 300) -> str:
    return " ".join(text.split())[:limit]


class _Timeout(Exception):
    pass


def _within(deadline: float, fn: Callable[[], T]) -> T:
    """Run ``fn`` in a daemon thread and give up after ``deadline`` seconds.

    The underlying calls have their own timeouts too; this bounds any that do not (a hung
    TLS handshake, say), so one check can never stall the report. An abandoned thread dies
    with the session it uses, which the caller closes.
    """
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(deadline)
    if thread.is_alive():
        raise _Timeout(f"no answer within {deadline:g}s")
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


def _row(check: str, fn: Callable[[], str], deadline: float) -> CheckRow:
    """Run one check: ``fn`` returns the detail on success and raises on failure."""
    try:
        return CheckRow(check, "ok", _one_line(_within(deadline, fn)))
    except OmniError as exc:
        return CheckRow(check, "fail", _one_line(exc.message), exc.code)
    except _Timeout as exc:
        return CheckRow(check, "fail", str(exc), "timeout")
    except Exception as exc:
        return CheckRow(check, "fail", _one_line(f"{type(exc).__name__}: {exc}"), "error")


# -- the individual checks (each returns a one-line detail or raises) -------------------


def check_docker(session: Session) -> str:
    return f"engine {session.docker().version()}"


def check_gateway(session: Session, host: Host, timeout: float) -> str:
    """What tenants' private networks need: the gateway image, and socat on the host
    (omni reaches a tenant's Redis through its gateway's socket with it)."""
    if session.docker().image_id(host.gateway_image) is None:
        raise CheckFailed(f"gateway image {host.gateway_image} is not on the host "
                          "(build it from lab/images/gateway)")
    result = session.transport.run(["socat", "-V"], timeout=timeout, check=False)
    if not result.ok:
        raise CheckFailed("socat is not installed on the host (apt-get install socat)")
    version = next((ln.strip() for ln in result.text().splitlines() if "version" in ln), "")
    return f"{host.gateway_image} present; {version or 'socat installed'}"


def check_nginx(session: Session, host: Host, timeout: float) -> str:
    result = session.transport.run(host.nginx.test_command, timeout=timeout, check=False)
    output = (result.stderr + b"\n" + result.stdout).decode("utf-8", "replace")
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    if not result.ok:
        # nginx puts the offending line first, the "test failed" summary last.
        raise CheckFailed(
            f"`{' '.join(host.nginx.test_command)}` exited "
            f"{result.exit_status}: {lines[0] if lines else 'no output'}"
        )
    return lines[-1] if lines else "config test passed"


def check_postgres(session: Session) -> str:
    with session.postgres() as conn:
        row = conn.execute("SELECT current_setting('server_version')").fetchone()
    return f"PostgreSQL {row[0]}"


def parse_df(output: str) -> tuple[int, int, str]:
    """``df -P -k`` output -> (available bytes, used percent, mount point)."""
    lines = [ln for ln in output.splitlines() if ln.strip()]
    if len(lines) < 2:
        raise ValueError("unexpected df output")
    fields = lines[-1].split()
    available_kib, capacity, mount = int(fields[3]), fields[4], fields[5]
    return available_kib * 1024, int(capacity.rstrip("%")), mount


def check_disk(session: Session, host: Host, timeout: float, min_free: int) -> str:
    path = host.state_dir
    result = session.transport.run(["df", "-P", "-k", "--", path], timeout=timeout, check=False)
    note = ""
    if not result.ok:  # state_dir not created yet: report the file system it will live on
        result = session.transport.run(["df", "-P", "-k", "--", "/"], timeout=timeout)
        note = f" ({path} does not exist yet)"
    free, used, mount = parse_df(result.text())
    detail = f"{free / GIB:.1f} GiB free on {mount} ({used}% used){note}"
    if free < min_free:
        raise CheckFailed(f"only {detail}; need at least {min_free / GIB:.1f} GiB")
    return detail


def check_acme(host: Host, timeout: float) -> str:
    """GET the ACME directory from this machine (trusting ``acme.ca_bundle`` if set)."""
    url = host.acme.directory_url
    context = ssl.create_default_context(cafile=host.acme.ca_bundle)
    # The model only admits https:// URLs, so no file: or custom scheme reaches urlopen.
    request = urllib.request.Request(url, headers={"User-Agent": "omni-hosts-check"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:  # noqa: S310
            body = json.loads(response.read(1 << 20))
    except urllib.error.HTTPError as exc:
        raise CheckFailed(f"{url} answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CheckFailed(f"{url}: {_one_line(str(reason))}") from None
    missing = [k for k in ("newNonce", "newAccount", "newOrder") if k not in body]
    if missing:
        raise CheckFailed(f"{url} is not an ACME directory (no {', '.join(missing)})")
    return f"{url} answers"


# -- per host ---------------------------------------------------------------------------


def _connection_rows(host: Host, error: OmniError | None) -> list[CheckRow]:
    where = f"{host.user}@{host.address}:{host.port}" if host.transport == "ssh" else "local"
    if error is None:
        pins = len(host.host_keys)
        return [
            CheckRow("reachable", "ok", where),
            CheckRow(
                "host_key",
                "ok",
                f"matches one of {pins} pinned key(s)"
                if host.transport == "ssh"
                else "local transport: no SSH",
            ),
            CheckRow("login", "ok", f"as {host.user}" if host.transport == "ssh" else "local"),
        ]
    msg = _one_line(error.message)
    if isinstance(error, HostKeyMismatch):
        return [
            CheckRow("reachable", "ok", where),
            CheckRow("host_key", "fail", msg, error.code),
            CheckRow("login", "skip", "not attempted with an untrusted key"),
        ]
    if isinstance(error, AuthenticationFailed):
        return [
            CheckRow("reachable", "ok", where),
            CheckRow("host_key", "ok", "pinned key matched"),
            CheckRow("login", "fail", msg, error.code),
        ]
    return [
        CheckRow("reachable", "fail", msg, error.code),
        CheckRow("host_key", "skip", "not reached"),
        CheckRow("login", "skip", "not reached"),
    ]


def check_host(
    host: Host,
    *,
    open_session: SessionFactory = _open_host_session,
    timeouts: Timeouts = Timeouts(),
    min_free: int = MIN_FREE_BYTES,
) -> list[CheckRow]:
    """Every check for one host; never raises for a host-side problem (it becomes a row).

    Opens one session and closes it before returning.
    """
    session = open_session(host, timeouts.connect)
    try:
        error: OmniError | None = None
        try:
            # Construction of the transport connects; paramiko's own timeouts bound it,
            # _within backs them up.
            _within(timeouts.connect * 3, lambda: session.transport)
        except HostUnreachable as exc:
            error = exc
        except _Timeout as exc:
            error = HostUnreachable(f"host {host.name}: SSH connect: {exc}", host=host.name)
        rows = _connection_rows(host, error)
        t = timeouts.command
        remote: list[tuple[str, Callable[[], str]]] = [
            ("docker", lambda: check_docker(session)),
            ("gateway", lambda: check_gateway(session, host, t)),
            ("nginx", lambda: check_nginx(session, host, t)),
            ("postgres", lambda: check_postgres(session)),
            ("disk", lambda: check_disk(session, host, t, min_free)),
        ]
        for name, fn in remote:
            if error is None:
                rows.append(_row(name, fn, t + 5))
            else:
                rows.append(CheckRow(name, "skip", f"skipped: {error.code}"))
        rows.append(_row("acme", lambda: check_acme(host, timeouts.acme), timeouts.acme + 5))
        return rows
    finally:
        # Closing a broken connection must not hide the report.
        with contextlib.suppress(Exception):
            session.close()


def hosts_check(
    inventory: Inventory,
    names: Sequence[str] = (),
    *,
    open_session: SessionFactory = _open_host_session,
    timeouts: Timeouts = Timeouts(),
    min_free: int = MIN_FREE_BYTES,
    progress: Callable[[str], None] | None = None,
) -> Result:
    """Check ``names`` (default: every host in the inventory) concurrently.

    Raises :class:`omni.errors.InvalidInput` for an unknown name before connecting anywhere.
    The result's ``data.hosts`` lists each host with its rows; any failed row makes the
    result an error with exit code CHECK_FAILED (1).
    """
    hosts = (
        [inventory.host(n) for n in dict.fromkeys(names)]
        if names
        else [inventory.hosts[n] for n in sorted(inventory.hosts)]
    )

    def one(host: Host) -> list[CheckRow]:
        rows = check_host(host, open_session=open_session, timeouts=timeouts, min_free=min_free)
        if progress is not None:
            failed = sum(r.status == "fail" for r in rows)
            progress(
                f"host {host.name}: "
                + (f"{failed} check(s) failed" if failed else "all checks passed")
            )
        return rows

    with ThreadPoolExecutor(max_workers=max(1, len(hosts))) as pool:
        reports = list(pool.map(one, hosts))

    data_hosts = []
    failed: list[dict[str, Any]] = []
    for host, rows in zip(hosts, reports, strict=True):
        data_hosts.append(
            {
                "name": host.name,
                "address": host.address,
                "ok": all(r.status != "fail" for r in rows),
                "checks": [r.to_dict() for r in rows],
            }
        )
        failed += [
            {"host": host.name, "check": r.check, "code": r.code}
            for r in rows
            if r.status == "fail"
        ]
    data = {"hosts": data_hosts}
    if not failed:
        return Result.success(COMMAND, data=data)
    total = sum(len(rows) for rows in reports)
    summary = ", ".join(f"{f['host']}/{f['check']}" for f in failed)
    error = CheckFailed(f"{len(failed)} of {total} checks failed: {summary}", failed=failed)
    return Result.failure(COMMAND, [error], data=data)
