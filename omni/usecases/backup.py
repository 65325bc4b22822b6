"""Use cases: ``omni backup`` (run, list, verify, restore): offsite restic backups.

- :func:`backup_tenants`: per tenant, on the fleet runner under its lock, one backup into
  the host's repository (``pg_dump`` streamed into restic, row counts recorded, read back
  with ``pg_restore --list``), then the retention policy, sparing the snapshot just taken.
  Failures do not stop the others; exit 3 if any failed.
- :func:`list_backups`: one tenant's backups (time, size, release).
- :func:`verify_backups`: per tenant, its latest backup restored into a scratch database
  on its host, row counts compared with the record; per host, ``restic check
  --read-data-subset``. Read-only for tenants (no lock). Exit 1 if any verification failed.
- :func:`restore_backup`: a backup restored as the tenant's database (new database, then
  names swapped; the replaced one kept), under the tenant's lock, then the health gate.

A host without ``backup`` settings is refused before anything connects (exit 2).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omni.audit import AuditContext, audited
from omni.backup import ops, restic
from omni.engine.engine import NullProgress
from omni.errors import CheckFailed, InvalidInput, OmniError, StepFailed
from omni.fleet.command import run_command
from omni.fleet.runner import FleetOptions, FleetProgress, Outcome, TenantResult, check_parallel
from omni.fleet.selection import select_tenants
from omni.hosts.lock import check_wait_seconds
from omni.inventory.loader import Inventory, load_inventory
from omni.output.result import Result
from omni.tenant.secrets import TenantSecrets
from omni.tenant.spec import TenantSpec
from omni.usecases.sessions import SessionOptions, open_host_session

if TYPE_CHECKING:
    from omni.hosts.session import HostSession
    from omni.inventory.models import Host, Tenant

Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def database_name(host: Host, tenant: Tenant, now: datetime) -> str:
    """The tenant's database name (naming only: the secrets are never used)."""
    return TenantSpec(tenant, host, TenantSecrets.generate(), 0, 0, now=now).db_name


def _require_backups(inventory: Inventory, tenants: Sequence[Tenant]) -> None:
    for name in sorted({t.host for t in tenants}):
        restic.require_backup(inventory.host(name))


# -- omni backup [run] -----------------------------------------------------------------


@dataclass(frozen=True)
class BackupRequest:
    slugs: Sequence[str] = ()
    every: bool = False
    parallel: int | None = None
    wait_seconds: float = 0.0


def backup_tenants(
    request: BackupRequest,
    inventory_path: Path,
    *,
    progress: FleetProgress | None = None,
    clock: Clock = _utcnow,
    audit: AuditContext | None = None,
    sessions: SessionOptions | None = None,
) -> Result:
    """See the module docstring."""
    command = "backup"
    started = audit.now() if audit else clock()
    check_parallel(request.parallel)
    check_wait_seconds(request.wait_seconds, "--wait")
    inventory = load_inventory(inventory_path)
    tenants = select_tenants(inventory, request.slugs, every=request.every,
                             require_choice=True)
    _require_backups(inventory, tenants)

    def back_up(session: HostSession, tenant: Tenant) -> Outcome:
        now = clock()
        taken = ops.take_backup(session, tenant, database_name(session.host, tenant, now),
                                now=now)
        data = taken.to_dict()
        try:
            kept = ops.apply_retention(session, tenant.slug, [taken.snapshot, taken.record])
        except OmniError as exc:
            return Outcome("failed", f"snapshot {taken.snapshot} saved; retention failed: "
                           f"{exc.message}", data, error=exc)
        data.update(kept=kept.kept, removed=list(kept.removed))
        # A database a restore replaced is kept until this: a newer backup now exists.
        dropped = drop_replaced_databases(session, tenant, before=now)
        data["dropped_replaced_databases"] = dropped
        gone = f"; dropped {', '.join(dropped)} (kept by a restore)" if dropped else ""
        return Outcome("ok", f"snapshot {taken.snapshot}: {_size(taken.size)}, "
                       f"{taken.tables} tables, {taken.rows} rows; "
                       f"{len(kept.removed)} old snapshot(s) forgotten{gone}", data)

    options = FleetOptions(parallel=request.parallel, lock=True,
                           lock_wait_seconds=request.wait_seconds, keep_going=True,
                           purpose=command)
    return run_command(command, inventory, tenants, back_up, options, failure=StepFailed,
                       started=started, mutating=True, progress=progress, audit=audit,
                       sessions=sessions)


def drop_replaced_databases(session: HostSession, tenant: Tenant, *, before: datetime
                            ) -> list[str]:
    """Drop the databases restores replaced (``<db>_r<epoch>``, owned by the tenant's role)
    from before ``before``; returns their names. Chosen by owner and exact name pattern,
    so another tenant's database is never touched."""
    import re

    from psycopg import sql

    from omni.resources.removal import OwnedDatabasesAbsent

    naming = TenantSpec(tenant, session.host, TenantSecrets.generate(), 0, 0, now=before)
    live, role = naming.db_name, naming.role_name
    pattern = re.compile(rf"{re.escape(live)}_r(\d+)")
    doomed = [
        name for name in OwnedDatabasesAbsent(role, live).observe(session)
        if (match := pattern.fullmatch(name)) and int(match.group(1)) <= before.timestamp()
    ]
    with session.postgres() as conn:
        for name in doomed:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))
    return doomed


def _size(size: int | None) -> str:
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


# -- omni backup list -------------------------------------------------------------------


def list_backups(slug: str, inventory_path: Path, *,
                 sessions: SessionOptions | None = None) -> Result:
    """The tenant's backups, oldest first: snapshot, time, size, release, image."""
    inventory = load_inventory(inventory_path)
    tenant = select_tenants(inventory, [slug])[0]
    host = inventory.host(tenant.host)
    restic.require_backup(host)
    session = open_host_session(inventory, host.name, None, sessions)
    try:
        entries = ops.list_entries(session, slug)
    finally:
        session.close()
    return Result.success("backup list", data={
        "tenant": slug, "host": host.name, "repository": restic.require_backup(host).repository,
        "snapshots": [dict(e.to_dict(), size_text=_size(e.size)) for e in entries],
    })


# -- omni backup verify -----------------------------------------------------------------


@dataclass(frozen=True)
class VerifyRequest:
    slugs: Sequence[str] = ()
    every: bool = False
    parallel: int | None = None
    read_data_subset: float = 10.0  # percent of the repository's packs `restic check` reads


class _RepositoryChecks:
    """``restic check`` once per host for the run, whichever tenant asks first."""

    def __init__(self, subset: float) -> None:
        self.subset = subset
        self.done: dict[str, str | None] = {}  # host -> None (ok) or the problem
        self.guard = threading.Lock()
        self.host_locks: dict[str, threading.Lock] = {}

    def problem(self, session: HostSession) -> str | None:
        with self.guard:
            lock = self.host_locks.setdefault(session.name, threading.Lock())
        with lock:
            if session.name not in self.done:
                settings = restic.require_backup(session.host)
                try:
                    ops.check_repository(session.transport, settings, self.subset)
                    self.done[session.name] = None
                except StepFailed as exc:
                    self.done[session.name] = exc.message
            return self.done[session.name]


def verify_backups(
    request: VerifyRequest,
    inventory_path: Path,
    *,
    progress: FleetProgress | None = None,
    sessions: SessionOptions | None = None,
) -> Result:
    """See the module docstring."""
    command = "backup verify"
    check_parallel(request.parallel)
    if not 0 < request.read_data_subset <= 100:
        raise InvalidInput("--read-data-subset: a percentage above 0 and at most 100",
                           field="read_data_subset")
    inventory = load_inventory(inventory_path)
    tenants = select_tenants(inventory, request.slugs, every=request.every,
                             require_choice=True)
    _require_backups(inventory, tenants)
    checks = _RepositoryChecks(request.read_data_subset)

    def verify_one(session: HostSession, tenant: Tenant) -> Outcome:
        repository_problem = checks.problem(session)
        data: dict[str, Any] = {"snapshot": None, "time": None, "tables": None, "rows": None}
        try:
            entry = ops.choose(ops.list_entries(session, tenant.slug), None, tenant.slug)
            data.update(snapshot=entry.dump.short_id, time=entry.dump.time.isoformat())
            verified = ops.verify_entry(session, tenant.slug, entry)
            data.update(tables=verified.tables, rows=verified.rows)
            problems = list(verified.problems)
        except StepFailed as exc:  # the repository could not give the backup back
            problems = [exc.message]
        if repository_problem:
            problems.append(repository_problem)
        data["problems"] = problems
        if problems:
            message = (f"{tenant.slug}: backup {data['snapshot'] or '-'} failed "
                       f"verification: " + "; ".join(problems[:3]))
            return Outcome("failed", "; ".join(problems[:3]), data,
                           error=CheckFailed(message, tenant=tenant.slug))
        return Outcome("ok", f"snapshot {data['snapshot']} restores: {data['tables']} "
                       f"tables, {data['rows']} rows as recorded", data)

    options = FleetOptions(parallel=request.parallel, lock=False, keep_going=True,
                           purpose=command)
    def data(results: list[TenantResult]) -> dict[str, Any]:
        return {"repositories": [
            {"host": host, "ok": problem is None,
             "detail": problem or f"restic check --read-data-subset="
                                  f"{request.read_data_subset:g}%: no errors"}
            for host, problem in sorted(checks.done.items())
        ]}

    return run_command(command, inventory, tenants, verify_one, options, failure=CheckFailed,
                       started=_utcnow(), mutating=False, data=data, progress=progress,
                       sessions=sessions)


# -- omni backup restore ----------------------------------------------------------------


@dataclass(frozen=True)
class RestoreRequest:
    slug: str
    snapshot: str | None = None
    confirmed: bool = False
    dry_run: bool = False
    wait_seconds: float = 0.0
    expect_plan: str | None = None  # the reviewed dry run's plan_fingerprint


def restore_backup(
    request: RestoreRequest,
    inventory_path: Path,
    *,
    clock: Clock = _utcnow,
    audit: AuditContext | None = None,
    sessions: SessionOptions | None = None,
) -> Result:
    """See the module docstring. The snapshot's dump is fetched to a 0600 file in the
    host's dump dir, restored by :func:`omni.tenant.restore.restore_database` (which reads
    it back first), and removed. With ``expect_plan`` it refuses (exit 2) unless a fresh
    dry run has that fingerprint (tenant, host, the snapshot chosen); a dry run carries
    ``plan_fingerprint``."""
    from omni.usecases.plan import apply_reviewed

    def reviewed(result: Result) -> object:
        return {k: result.data.get(k) for k in ("tenant", "host", "snapshot", "record")}

    def run(dry_run: bool) -> Result:
        return _restore(dataclasses.replace(request, dry_run=dry_run), inventory_path,
                        clock=clock, audit=audit, sessions=sessions)

    return apply_reviewed(run, dry_run=request.dry_run, expect_plan=request.expect_plan,
                          reviewed=reviewed, command="backup restore")


def _restore(
    request: RestoreRequest,
    inventory_path: Path,
    *,
    clock: Clock,
    audit: AuditContext | None,
    sessions: SessionOptions | None,
) -> Result:
    from omni.tenant.dumps import fetched_dump_path
    from omni.tenant.existing import existing_spec
    from omni.tenant.health import health_gate
    from omni.tenant.restore import restore_database

    command = "backup restore"
    started = audit.now() if audit else None
    check_wait_seconds(request.wait_seconds, "--wait")
    inventory = load_inventory(inventory_path)
    tenant = select_tenants(inventory, [request.slug])[0]
    host = inventory.host(tenant.host)
    restic.require_backup(host)
    if request.snapshot is not None and not _is_snapshot_id(request.snapshot):
        raise InvalidInput("--snapshot: a snapshot id (4 to 64 hex digits)", field="snapshot")
    if not request.confirmed and not request.dry_run:
        raise InvalidInput(
            f"--yes: restoring {request.slug!r} replaces its live database with the backup "
            "(the current one is kept, renamed); pass --yes to confirm or --dry-run to look",
            field="yes",
        )
    session = open_host_session(inventory, host.name, None, sessions)
    try:
        now = clock()
        entry = ops.choose(ops.list_entries(session, tenant.slug), request.snapshot,
                           tenant.slug)
        age = now - entry.dump.time
        data: dict[str, Any] = {
            "tenant": tenant.slug, "host": host.name, "dry_run": request.dry_run,
            **entry.to_dict(), "age_hours": round(age.total_seconds() / 3600, 1),
        }
        if request.dry_run:
            data["would"] = (f"restore snapshot {entry.dump.short_id} into a new database, "
                             f"swap it in for {database_name(host, tenant, now)} (kept "
                             "renamed), then the health gate")
            return Result.success(command, data=data)
        with session.lock(f"tenant-{tenant.slug}", request.wait_seconds,
                          purpose=f"{command} {tenant.slug}"), audited(
                audit, session, command=command, tenants=[tenant.slug],
                started=started) as recording:
            spec = existing_spec(session, host, tenant, now)
            path = fetched_dump_path(host, tenant.slug, entry.dump.short_id)
            try:
                ops.fetch_dump(session, tenant.slug, entry, path)
                restored = restore_database(session, spec, path, now)
            finally:
                session.transport.remove_file(path)
            data.update(database=restored.database, replaced=restored.replaced)
            try:
                health_gate(spec, NullProgress())
            except StepFailed as exc:
                raise StepFailed(
                    f"{tenant.slug}: restored snapshot {entry.dump.short_id}, but "
                    f"{exc.message}; the previous database is kept as {restored.replaced}",
                    tenant=tenant.slug, replaced=restored.replaced,
                ) from None
            return recording.done(Result.success(command, data=data, changed=True))
    finally:
        session.close()


def _is_snapshot_id(value: str) -> bool:
    return 4 <= len(value) <= 64 and all(c in "0123456789abcdef" for c in value)
