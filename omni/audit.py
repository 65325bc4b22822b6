"""The audit log: one append-only JSON-lines file per host, ``<state_dir>/audit.jsonl``.

This module owns the format; nothing else writes or parses the file.

**Format.** One JSON object per line (UTF-8, keys in this order):

- ``when``: start of the run, UTC, ISO 8601 with milliseconds and ``Z``;
- ``who``: the actor (:func:`omni.actor.actor`);
- ``command``: e.g. ``"tenant create"``, ``"migrate-all"``;
- ``argv``: the CLI arguments after ``omni``, secret option values masked
  (:func:`omni.redact.mask_argv`);
- ``tenants``: the tenants this run touched on this host;
- ``plan_fingerprint``: the reviewed plan's fingerprint, or ``null``;
- ``result``: ``"success"`` or ``"error"``; ``exit_code``: the run's exit status;
- ``seconds``: how long the run took until the entry was written.

**Writes.** Each entry is one line of at most 4 KiB (long argv/tenant lists are shortened,
``"truncated": true`` says so), appended on the host with a single ``O_APPEND`` ``write``
(``dd oflag=append`` of exactly the line's length, from stdin), so concurrent runs never
interleave; the file is created 0600 under ``umask 077`` and never rewritten. A failure to
append is a warning (logged), never the run's failure: the change it describes happened.

**How a use case records** (not for dry runs, once per host session it changed, before the
session closes). The use case takes ``audit: AuditContext | None = None`` from its shell
(the CLI builds it with :meth:`CliContext.audit`), then either wraps the work::

    with audited(audit, session, command=COMMAND, tenants=[slug],
                 enabled=not request.dry_run) as entry:
        ...
        entry.plan_fingerprint = plan.fingerprint()        # optional
        return entry.done(result)                           # records `result`

(an exception leaving the block is recorded as an error with its exit code, then re-raised)
or calls the primitive itself::

    started = audit.now()
    ...
    audit.record(session, command=COMMAND, tenants=[slug], result=result_or_exception,
                 started=started, plan_fingerprint=fp)

Fleet commands call ``audit.record_fleet(pool, command=COMMAND, results=results,
result=result, started=started)`` before the pool closes: one entry per host on which a
tenant ended ``ok``, ``warning`` or ``failed``, listing that host's tenants.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from omni.errors import ExitCode, OmniError
from omni.output.result import Result
from omni.redact import mask_argv

if TYPE_CHECKING:
    from omni.fleet.runner import Sessions, TenantResult
    from omni.hosts.session import HostSession
    from omni.transport.base import Transport

log = logging.getLogger(__name__)

AUDIT_FILE = "audit.jsonl"
MAX_LINE_BYTES = 4096  # POSIX guarantees no interleaving for O_APPEND writes this small
FIELDS = ("when", "who", "command", "argv", "tenants", "plan_fingerprint", "result",
          "exit_code", "seconds")
_TOUCHED = frozenset({"ok", "warning", "failed"})
_GOOD = frozenset({"ok", "warning", "skipped"})
_MAX_ARG_CHARS = 200
# $1: the audit file, $2: the line's length in bytes; the line on stdin. One read of
# exactly that many bytes, one O_APPEND write; created 0600.
_APPEND_SCRIPT = (
    'umask 077 && mkdir -p -- "$(dirname -- "$1")" && '
    'exec dd of="$1" oflag=append conv=notrunc iflag=fullblock bs="$2" count=1 status=none'
)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def audit_path(state_dir: str) -> str:
    """The audit log's path on a host with this ``state_dir``."""
    return f"{state_dir.rstrip('/')}/{AUDIT_FILE}"


def iso(moment: datetime) -> str:
    """``moment`` in UTC as ``YYYY-MM-DDTHH:MM:SS.mmmZ``."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def make_entry(
    *,
    when: datetime,
    who: str,
    command: str,
    argv: Sequence[str],
    tenants: Iterable[str],
    result: str,
    exit_code: int,
    seconds: float,
    plan_fingerprint: str | None = None,
) -> dict[str, Any]:
    """One entry as a dict in the documented key order; ``argv`` is masked here. Pure."""
    return {
        "when": iso(when),
        "who": who,
        "command": command,
        "argv": mask_argv(argv),
        "tenants": list(tenants),
        "plan_fingerprint": plan_fingerprint,
        "result": result,
        "exit_code": int(exit_code),
        "seconds": round(max(0.0, seconds), 2),
    }


def encode_line(entry: Mapping[str, Any]) -> bytes:
    """The entry as one JSON line (with ``\\n``) of at most :data:`MAX_LINE_BYTES`.

    Too long: each argv element is cut to 200 characters, then argv and the tenant list are
    halved until it fits, and ``"truncated": true`` is added. Pure.
    """
    def dump(value: Mapping[str, Any]) -> bytes:
        return (json.dumps(value, ensure_ascii=False, separators=(",", ":")) + "\n").encode()

    line = dump(entry)
    if len(line) <= MAX_LINE_BYTES:
        return line
    short = dict(entry, truncated=True)
    short["argv"] = [a if len(a) <= _MAX_ARG_CHARS else a[: _MAX_ARG_CHARS - 3] + "..."
                     for a in entry.get("argv", [])]
    for key in ("who", "command", "plan_fingerprint"):
        if isinstance(short.get(key), str):
            short[key] = short[key][:_MAX_ARG_CHARS]
    line = dump(short)
    argv, tenants = list(short["argv"]), list(entry.get("tenants") or [])
    keep_argv, keep_tenants = len(argv), len(tenants)
    while len(line) > MAX_LINE_BYTES and (keep_argv or keep_tenants):
        keep_argv, keep_tenants = keep_argv // 2, keep_tenants // 2
        short["argv"] = [*argv[:keep_argv], "..."]
        short["tenants"] = [*tenants[:keep_tenants], *(["..."] if tenants else [])]
        line = dump(short)
    return line


def append(transport: Transport, state_dir: str, entry: Mapping[str, Any]) -> None:
    """Append ``entry`` to the host's audit log (one ``O_APPEND`` write; file 0600).

    Not idempotent (each call adds a line). Raises ``OmniError`` (``CommandFailed``,
    ``HostUnreachable``) if the host does not take it.
    """
    line = encode_line(entry)
    transport.run(
        ["sh", "-c", _APPEND_SCRIPT, "omni-audit", audit_path(state_dir), str(len(line))],
        stdin=line,
        timeout=30,
    )


def parse_log(raw: bytes) -> tuple[list[dict[str, Any]], int]:
    """The entries of an audit log's bytes, in file order, and how many lines were not
    entries (unparseable, or without ``when``). Blank lines are ignored. Pure."""
    entries: list[dict[str, Any]] = []
    bad = 0
    for line in raw.splitlines():
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if not isinstance(entry, dict) or not isinstance(entry.get("when"), str):
            bad += 1
            continue
        entries.append(entry)
    return entries, bad


def _sort_key(entry: Mapping[str, Any]) -> tuple[datetime, str]:
    try:
        when = datetime.fromisoformat(str(entry["when"]).replace("Z", "+00:00"))
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
    except ValueError:
        when = datetime.min.replace(tzinfo=UTC)
    return when, str(entry.get("host", ""))


def merge(per_host: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """Every host's entries, each with ``host`` added, oldest first (newest last); ties
    keep host-name then file order. Pure."""
    tagged = [
        {**entry, "host": host}
        for host in sorted(per_host)
        for entry in per_host[host]
    ]
    return sorted(tagged, key=_sort_key)  # stable: file order kept within a host


def for_tenant(entries: Iterable[Mapping[str, Any]], slug: str) -> list[dict[str, Any]]:
    """The entries whose ``tenants`` list names ``slug``. Pure."""
    return [dict(e) for e in entries if slug in (e.get("tenants") or [])]


def _outcome(result: Result | BaseException | None) -> tuple[str, int]:
    if result is None:
        return "success", int(ExitCode.OK)
    if isinstance(result, Result):
        return result.status, int(result.exit_code)
    if isinstance(result, OmniError):
        return "error", int(result.exit_code)
    if isinstance(result, KeyboardInterrupt):
        return "error", 130
    return "error", int(ExitCode.INTERNAL)


@dataclass(frozen=True)
class AuditContext:
    """Who runs which command line: built once by a shell, passed into use cases.

    ``argv`` are the CLI arguments after ``omni`` (masked when entries are made),
    ``actor`` the name from :func:`omni.actor.actor`, ``clock`` the time source.
    """

    argv: tuple[str, ...]
    actor: str
    clock: Callable[[], datetime] = field(default=_utcnow, repr=False, compare=False)

    def now(self) -> datetime:
        """The ``started`` value for :meth:`record`."""
        return self.clock()

    def entry(
        self,
        *,
        command: str,
        tenants: Iterable[str],
        result: Result | BaseException | None,
        started: datetime,
        plan_fingerprint: str | None = None,
    ) -> dict[str, Any]:
        """The entry :meth:`record` would append. Pure apart from the clock."""
        status, code = _outcome(result)
        return make_entry(
            when=started,
            who=self.actor,
            command=command,
            argv=self.argv,
            tenants=tenants,
            result=status,
            exit_code=code,
            seconds=(self.clock() - started).total_seconds(),
            plan_fingerprint=plan_fingerprint,
        )

    def record(
        self,
        session: HostSession,
        *,
        command: str,
        tenants: Iterable[str],
        result: Result | BaseException | None,
        started: datetime,
        plan_fingerprint: str | None = None,
    ) -> dict[str, Any] | None:
        """Append one entry to ``session``'s host: ``result`` is the run's ``Result``, or
        the exception that ended it (``None``: success). Returns the entry, or ``None`` if
        the host did not take it (logged as a warning; never raises ``OmniError``)."""
        entry = self.entry(command=command, tenants=tenants, result=result,
                           started=started, plan_fingerprint=plan_fingerprint)
        try:
            append(session.transport, session.host.state_dir, entry)
        except OmniError as exc:
            log.warning("audit: host %s: entry not written: %s", session.name, exc.message)
            return None
        return entry

    def record_fleet(
        self,
        sessions: Sessions,
        *,
        command: str,
        results: Sequence[TenantResult],
        result: Result,
        started: datetime,
    ) -> list[dict[str, Any]]:
        """One entry per host where a tenant ended ``ok``, ``warning`` or ``failed``,
        listing those tenants; ``error`` (with ``result``'s exit code) on a host where one
        of them failed, else ``success``. Returns the entries written."""
        by_host: dict[str, list[TenantResult]] = {}
        for tenant_result in results:
            if tenant_result.status in _TOUCHED:
                by_host.setdefault(tenant_result.host, []).append(tenant_result)
        written = []
        for host, touched in sorted(by_host.items()):
            failed = any(r.status not in _GOOD for r in touched)
            entry = self.record(sessions.get(host), command=command,
                                tenants=[r.slug for r in touched],
                                result=result if failed else None,
                                started=started)
            if entry is not None:
                written.append(entry)
        return written


class Recording:
    """What :func:`audited` records when its block ends; set by the use case."""

    def __init__(self) -> None:
        self.result: Result | None = None
        self.plan_fingerprint: str | None = None

    def done(self, result: Result) -> Result:
        """Keep ``result`` as the run's outcome and hand it back (``return entry.done(r)``)."""
        self.result = result
        return result


@contextlib.contextmanager
def audited(
    audit: AuditContext | None,
    session: HostSession,
    *,
    command: str,
    tenants: Sequence[str],
    enabled: bool = True,
    started: datetime | None = None,
) -> Iterator[Recording]:
    """Record one entry on ``session``'s host when the block ends: the ``Result`` passed
    to :meth:`Recording.done`, or the exception leaving the block (re-raised), or success
    if the block ended with neither. ``started``: when the run began (default: entering
    the block). Does nothing without ``audit`` or when not ``enabled`` (dry runs)."""
    recording = Recording()
    if audit is None or not enabled:
        yield recording
        return
    started = started or audit.now()
    try:
        yield recording
    except BaseException as exc:
        audit.record(session, command=command, tenants=tenants, result=exc, started=started,
                     plan_fingerprint=recording.plan_fingerprint)
        raise
    audit.record(session, command=command, tenants=tenants, result=recording.result,
                 started=started, plan_fingerprint=recording.plan_fingerprint)
