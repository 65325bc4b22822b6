"""Use case: ``omni history [SLUG]``: what omni did, from every host's audit log.

Reads ``<state_dir>/audit.jsonl`` (see :mod:`omni.audit`) of every host (or one, with
``host``), one session per host, concurrently; read-only, takes no lock. A host that cannot
be read is a warning and its entries are missing; only when no host could be read is the
result a failure (``HostUnreachable``, exit 5). Entries are merged by time (newest last),
filtered to ``slug`` when given, and the last ``limit`` kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omni import audit as audit_log
from omni import validation
from omni.errors import HostUnreachable, InvalidInput, OmniError
from omni.inventory.loader import Inventory, load_inventory
from omni.output.result import Result
from omni.usecases.sessions import SessionOpener, SessionOptions, open_host_session

COMMAND = "history"
DEFAULT_LIMIT = 50


@dataclass(frozen=True)
class HistoryRequest:
    slug: str | None = None
    host: str | None = None
    limit: int = DEFAULT_LIMIT


@dataclass(frozen=True)
class _HostLog:
    host: str
    entries: Sequence[dict[str, Any]] = ()
    warning: str | None = None
    error: OmniError | None = None


def _check(request: HistoryRequest, inventory: Inventory) -> list[str]:
    """The hosts to read; raises ``InvalidInput`` naming the argument and the rule."""
    if request.slug is not None:
        try:
            validation.check_slug(request.slug)
        except ValueError as exc:
            raise InvalidInput(f"SLUG: {exc}", field="slug") from None
    if request.limit < 1:
        raise InvalidInput(f"--limit: must be at least 1 (got {request.limit})", field="limit")
    if request.host is not None:
        return [inventory.host(request.host).name]  # unknown: InvalidInput naming the known
    return sorted(inventory.hosts)


def _read(inventory: Inventory, name: str, opener: SessionOpener | None,
          options: SessionOptions | None) -> _HostLog:
    session = open_host_session(inventory, name, opener, options)
    try:
        raw = session.transport.read_file(audit_log.audit_path(session.host.state_dir))
    except OmniError as exc:
        return _HostLog(name, warning=f"host {name}: audit log not read: {exc.message}",
                        error=exc)
    finally:
        session.close()
    entries, bad = audit_log.parse_log(raw or b"")
    warning = (f"host {name}: {bad} line(s) of {audit_log.AUDIT_FILE} are not entries; "
               "skipped" if bad else None)
    return _HostLog(name, entries, warning)


def history(
    request: HistoryRequest,
    inventory_path: Path,
    *,
    open_session: SessionOpener | None = None,
    sessions: SessionOptions | None = None,
) -> Result:
    """See the module docstring. ``data``: ``entries`` (each a full audit entry plus
    ``host``), ``hosts`` (name -> ``read`` or ``unreadable``), ``warnings`` (one line each,
    for stderr), ``tenant``, ``limit``, ``total`` (matching entries before the limit)."""
    inventory = load_inventory(inventory_path)
    names = _check(request, inventory)
    with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
        logs = list(pool.map(lambda n: _read(inventory, n, open_session, sessions), names))
    readable = {log.host: log.entries for log in logs if log.error is None}
    entries = audit_log.merge(readable)
    if request.slug is not None:
        entries = audit_log.for_tenant(entries, request.slug)
    data: dict[str, Any] = {
        "tenant": request.slug,
        "limit": request.limit,
        "total": len(entries),
        "hosts": {log.host: "read" if log.error is None else "unreadable" for log in logs},
        "warnings": [log.warning for log in logs if log.warning],
        "entries": entries[-request.limit:],
    }
    if not readable:
        down = [log.host for log in logs]
        reasons = "; ".join(log.error.message for log in logs if log.error is not None)
        return Result.failure(
            COMMAND,
            [HostUnreachable(f"no host's audit log could be read: {reasons}", hosts=down)],
            data=data,
        )
    return Result.success(COMMAND, data=data)
