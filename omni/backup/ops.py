"""Backups of one tenant on its host: take, list, read back, verify, fetch, retention.

Everything runs on the tenant's host over the session's transport: ``pg_dump`` streams into
``restic backup --stdin`` (no plaintext dump on disk; ``pg_dump`` reads a temporary 0600
passfile, see :func:`omni.tenant.dumps.passfile_for`). The format (file names, tags, the
row-count record) belongs to :mod:`omni.backup.restic` and :mod:`omni.backup.counts`.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from omni.backup import restic
from omni.backup.counts import CountsRecord, compare_counts, table_counts
from omni.errors import StepFailed
from omni.tenant.dumps import passfile_for

if TYPE_CHECKING:
    from omni.hosts.session import HostSession
    from omni.inventory.models import BackupRetention, BackupSettings, Tenant
    from omni.transport.base import Transport

SCRATCH_PREFIX = "omni_verify_"  # tenants' databases are tenant_<slug>: never a clash
STAMP = "%Y%m%dT%H%M%SZ"


@dataclass(frozen=True)
class Taken:
    backup: str
    snapshot: str  # the dump's snapshot (short id)
    record: str  # the row-count record's snapshot
    size: int  # bytes of the dump
    tables: int
    rows: int
    entries: int  # pg_restore --list entries read back from the repository
    release: str

    def to_dict(self) -> dict[str, Any]:
        return {"backup": self.backup, "snapshot": self.snapshot, "record": self.record,
                "bytes": self.size, "tables": self.tables, "rows": self.rows,
                "entries": self.entries, "release": self.release}


@dataclass(frozen=True)
class Entry:
    """One backup of a tenant: its dump snapshot and (normally) its record snapshot."""

    dump: restic.Snapshot
    record: restic.Snapshot | None

    @property
    def size(self) -> int | None:
        raw = self.record.tags.get("bytes") if self.record else None
        return int(raw) if raw and raw.isdigit() else None

    def to_dict(self) -> dict[str, Any]:
        tags = self.dump.tags
        return {"snapshot": self.dump.short_id, "time": self.dump.time.isoformat(),
                "size": self.size, "release": tags.get("release"),
                "image": tags.get("image"), "backup": tags.get("backup"),
                "record": self.record.short_id if self.record else None}


def _release(session: HostSession, slug: str) -> str:
    from omni.releases import ledger

    live = ledger.current(ledger.releases(session.transport, session.host, slug))
    return live.release if live else "none"


@contextmanager
def _exported_snapshot(session: HostSession, database: str) -> Iterator[tuple[str, dict[str,
                                                                                       int]]]:
    """A read-only REPEATABLE READ transaction on ``database``, held for the ``with`` body:
    its exported snapshot id (for ``pg_dump --snapshot``) and the row counts it sees."""
    pg = session.host.postgres
    conn = session.connect_as(pg.admin_user, session.admin_password(), database)
    with conn:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        row = conn.execute("SELECT pg_export_snapshot()").fetchone()
        if row is None:
            raise StepFailed(f"{database}: pg_export_snapshot() returned nothing")
        counts = table_counts(conn)
        yield str(row[0]), counts
        conn.execute("COMMIT")


def _pg_dump_argv(session: HostSession, passfile: str, database: str, snapshot: str
                  ) -> list[str]:
    pg = session.host.postgres
    return ["env", f"PGPASSFILE={passfile}", "pg_dump", "--format=custom", "--no-password",
            f"--host={pg.host}", f"--port={pg.port}", f"--username={pg.admin_user}",
            f"--snapshot={snapshot}", database]


def _pipe(
    session: HostSession, producer: Sequence[str], consumer: Sequence[str],
    secrets: Sequence[str] = (),
) -> restic.PipeResult:
    """``producer | consumer`` on the host, retried while another restic holds the
    repository (a prune locks it exclusively)."""
    deadline = time.monotonic() + restic.LOCK_RETRY_SECONDS
    pause = 1.0
    while True:
        result = restic.run_pipe(session.transport, producer, consumer, secrets=secrets)
        if result.ok or not restic.is_locked(result.stderr) or time.monotonic() >= deadline:
            return result
        time.sleep(pause)
        pause = min(pause * 1.5, 10.0)


def take_backup(
    session: HostSession, tenant: Tenant, database: str, *, now: datetime,
    when: datetime | None = None,
) -> Taken:
    """One backup of the tenant's database into the host's repository (see
    :mod:`omni.backup.restic`), read back with ``pg_restore --list`` before it counts.
    ``when`` fakes the snapshots' time (tests of retention). Raises ``StepFailed``; a
    snapshot of a dump that failed half-way is forgotten again."""
    settings = restic.require_backup(session.host)
    transport = session.transport
    host, slug = session.host, tenant.slug
    backup_id = f"b{now.strftime(STAMP)}-{secrets.token_hex(2)}"
    release = _release(session, slug)
    pg = host.postgres
    password = session.admin_password()
    tags = restic.tags_for(restic.DUMP_KIND, slug, host.name, backup_id,
                           {"image": tenant.image, "release": release})
    with _exported_snapshot(session, database) as (pg_snapshot, counts), passfile_for(
        transport, f"{pg.dump_dir}/{slug}.restic", pg.host, pg.port, database, pg.admin_user,
        password,
    ) as passfile:
        piped = _pipe(
            session, _pg_dump_argv(session, passfile, database, pg_snapshot),
            restic.restic_argv(settings, restic.backup_args(
                restic.dump_filename(slug), tags, host.name, when)),
            secrets=[password],
        )
    snapshot: str | None = None
    size = 0
    if piped.consumer == 0:
        snapshot, size = restic.parse_backup_summary(piped.stdout)
    if not piped.ok:
        if snapshot is not None:  # restic saved what pg_dump wrote before it died
            restic.run_restic(transport, settings, ["forget", snapshot], what="restic forget",
                              check=False)
        who = "pg_dump" if piped.producer != 0 else "restic backup"
        raise StepFailed(f"backup of {slug} to {settings.repository} failed in {who}: "
                         f"{restic.error_tail(piped.stderr)}", tenant=slug)
    assert snapshot is not None
    record = CountsRecord(
        tenant=slug, host=host.name, backup=backup_id, dump_snapshot=snapshot, size=size,
        taken=(when or now).isoformat(), image=tenant.image, release=release, tables=counts,
    )
    record_tags = restic.tags_for(restic.COUNTS_KIND, slug, host.name, backup_id,
                                  {"dump": snapshot, "bytes": str(size)})
    saved = restic.run_restic(
        transport, settings,
        restic.backup_args(restic.counts_filename(slug), record_tags, host.name, when),
        stdin=record.to_json(), what=f"restic backup of {slug}'s row counts",
    )
    record_snapshot, _ = restic.parse_backup_summary(saved.stdout)
    entries = read_back(session, slug, snapshot)
    return Taken(backup_id, snapshot, record_snapshot, size, len(counts),
                 sum(counts.values()), entries, release)


def read_back(session: HostSession, slug: str, snapshot: str) -> int:
    """``restic dump | pg_restore --list``: the snapshot's dump reads back whole; returns
    its table-of-contents entries. Raises ``StepFailed``."""
    settings = restic.require_backup(session.host)
    piped = _pipe(
        session,
        restic.restic_argv(settings, restic.dump_args(snapshot, restic.dump_filename(slug))),
        ["pg_restore", "--list"],
    )
    entries = [ln for ln in piped.stdout.decode("utf-8", "replace").splitlines()
               if ln and not ln.startswith(";")]
    if not piped.ok or not entries:
        raise StepFailed(f"snapshot {snapshot} of {slug} does not read back with pg_restore "
                         f"--list: {restic.error_tail(piped.stderr)}", tenant=slug)
    return len(entries)


def list_entries(session: HostSession, slug: str) -> list[Entry]:
    """The tenant's backups in the repository, oldest first."""
    settings = restic.require_backup(session.host)
    listed = restic.run_restic(session.transport, settings, restic.snapshots_args(slug),
                               what="restic snapshots", timeout=300)
    return pair_entries(restic.parse_snapshots(listed.stdout))


def pair_entries(snapshots: Sequence[restic.Snapshot]) -> list[Entry]:
    """Pure: dump snapshots with their record (the newest record of the same backup)."""
    records: dict[str, restic.Snapshot] = {}
    for snap in snapshots:
        if snap.kind == restic.COUNTS_KIND and "backup" in snap.tags:
            current = records.get(snap.tags["backup"])
            if current is None or snap.time >= current.time:
                records[snap.tags["backup"]] = snap
    dumps = [s for s in snapshots if s.kind == restic.DUMP_KIND]
    dumps.sort(key=lambda s: s.time)
    return [Entry(d, records.get(d.tags.get("backup", ""))) for d in dumps]


def choose(entries: Sequence[Entry], snapshot: str | None, slug: str) -> Entry:
    """The entry of ``snapshot`` (an id or its prefix), or the latest. Raises
    ``StepFailed`` when there is none."""
    if not entries:
        raise StepFailed(f"tenant {slug} has no backup in its repository", tenant=slug)
    if snapshot is None:
        return entries[-1]
    found = [e for e in entries if e.dump.id.startswith(snapshot)]
    if len(found) != 1:
        raise StepFailed(f"tenant {slug}: no single backup snapshot {snapshot!r} "
                         f"({len(found)} match)", tenant=slug)
    return found[0]


def read_record(session: HostSession, slug: str, entry: Entry) -> CountsRecord:
    settings = restic.require_backup(session.host)
    if entry.record is None:
        raise StepFailed(f"backup {entry.dump.short_id} of {slug} has no row-count record",
                         tenant=slug)
    raw = restic.run_restic(
        session.transport, settings,
        restic.dump_args(entry.record.id, restic.counts_filename(slug)),
        what="restic dump of the row-count record", timeout=300,
    )
    record = CountsRecord.from_json(raw.stdout)
    if record.tenant != slug or not entry.dump.id.startswith(record.dump_snapshot):
        raise StepFailed(f"the row-count record of {slug}'s backup {entry.dump.short_id} "
                         "names another dump", tenant=slug)
    return record


@dataclass(frozen=True)
class Verified:
    snapshot: str
    time: str
    tables: int
    rows: int
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_entry(session: HostSession, slug: str, entry: Entry) -> Verified:
    """Restore ``entry`` into a scratch database ``omni_verify_<hex>`` on the host (never
    the live one), compare every table's row count with the record, drop the scratch
    database whatever happens. ``pg_restore`` failing or a count differing is a problem
    in the result; an unreadable repository raises ``StepFailed``."""
    from psycopg import sql

    record = read_record(session, slug, entry)
    settings = restic.require_backup(session.host)
    pg = session.host.postgres
    password = session.admin_password()
    scratch = f"{SCRATCH_PREFIX}{secrets.token_hex(6)}"
    with session.postgres() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(
            sql.Identifier(scratch)))
        conn.execute(sql.SQL("REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC").format(
            sql.Identifier(scratch)))
    problems: list[str] = []
    restored: dict[str, int] = {}
    try:
        with passfile_for(session.transport, f"{pg.dump_dir}/{slug}.verify", pg.host,
                          pg.port, scratch, pg.admin_user, password) as passfile:
            piped = _pipe(
                session,
                restic.restic_argv(settings, restic.dump_args(
                    entry.dump.id, restic.dump_filename(slug))),
                ["env", f"PGPASSFILE={passfile}", "pg_restore", "--exit-on-error",
                 "--no-password", "--no-owner", "--no-privileges", f"--host={pg.host}",
                 f"--port={pg.port}", f"--username={pg.admin_user}", f"--dbname={scratch}"],
                secrets=[password],
            )
        if not piped.ok:
            who = "restic dump" if piped.producer != 0 else "pg_restore"
            problems.append(f"{who} of snapshot {entry.dump.short_id} failed: "
                            f"{restic.error_tail(piped.stderr)}")
        else:
            with session.connect_as(pg.admin_user, password, scratch) as scratch_conn:
                restored = table_counts(scratch_conn)
            problems += compare_counts(record.tables, restored)
    finally:
        with session.postgres() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(scratch)))
    return Verified(entry.dump.short_id, entry.dump.time.isoformat(), len(record.tables),
                    sum(record.tables.values()), tuple(problems))


def check_repository(transport: Transport, settings: BackupSettings, subset_percent: float
                     ) -> str:
    """``restic check --read-data-subset=N%``; returns its verdict line. Raises
    ``StepFailed`` with what it found when the repository has errors."""
    result = restic.run_restic(transport, settings, restic.check_args(subset_percent),
                               what="restic check", check=False)
    if not result.ok:
        text = (result.stdout + b"\n" + result.stderr).decode("utf-8", "replace")
        found = [ln.strip() for ln in text.splitlines()
                 if ln.strip() and not ln.startswith(("using temporary cache", "create ",
                                                      "load ", "check ", "read ", "["))]
        raise StepFailed(f"restic check of {settings.repository} found errors: "
                         + "; ".join(found[:3])[:500])
    return "no errors were found"


def reachable(transport: Transport, settings: BackupSettings) -> None:
    """Raise ``StepFailed`` unless the repository opens (``restic cat config``)."""
    restic.run_restic(transport, settings, ["cat", "config"], timeout=120,
                      what=f"opening the backup repository {settings.repository}")


def fetch_dump(session: HostSession, slug: str, entry: Entry, path: str) -> None:
    """Write the snapshot's dump to ``path`` on the host (0600 from its first byte), for
    :func:`omni.tenant.restore.restore_database`; the caller removes it."""
    settings = restic.require_backup(session.host)
    session.transport.run(["mkdir", "-p", "-m", "700", path.rsplit("/", 1)[0]])
    argv = restic.restic_argv(settings, restic.dump_args(entry.dump.id,
                                                         restic.dump_filename(slug)))
    result = session.transport.run(
        ["sh", "-c", 'umask 077 && out=$1 && shift && exec "$@" > "$out"', "sh", path, *argv],
        timeout=restic.RESTIC_TIMEOUT_SECONDS, check=False,
    )
    if not result.ok:
        session.transport.remove_file(path)
        raise StepFailed(f"restic dump of snapshot {entry.dump.short_id} failed: "
                         f"{restic.error_tail(result.stderr)}", tenant=slug)


@dataclass(frozen=True)
class Retention:
    kept: int
    removed: tuple[str, ...]


def apply_retention(session: HostSession, slug: str, protect: Sequence[str],
                    retention: BackupRetention | None = None) -> Retention:
    """restic's ``forget`` policy for the tenant (the host's ``backup.retention`` unless
    ``retention``): a dry run lists what goes; if any of ``protect`` (the snapshots just
    taken) would go, nothing is removed (``StepFailed``); else exactly the listed snapshots
    are forgotten and the repository pruned."""
    settings = restic.require_backup(session.host)
    transport = session.transport
    policy = retention or settings.retention
    planned = restic.run_restic(
        transport, settings, restic.forget_policy_args(slug, policy, dry_run=True),
        what="restic forget --dry-run", timeout=300,
    )
    kept, removed = restic.parse_forget(planned.stdout)
    doomed_protected = [p for p in protect if any(r.startswith(p) for r in removed)]
    if doomed_protected:
        raise StepFailed(f"retention of {slug} would remove the snapshot just taken "
                         f"({', '.join(doomed_protected)}): nothing removed", tenant=slug)
    if removed:
        restic.run_restic(transport, settings, ["forget", *removed], what="restic forget")
        restic.run_restic(transport, settings, ["prune"], what="restic prune")
    return Retention(len(kept), tuple(r[:8] for r in removed))
