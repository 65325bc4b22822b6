"""Restore a tenant's database from a verified dump: into a new database, then swap names.

The live database is never dropped and never missing: the dump is restored into
``<db>_n<epoch>`` (PUBLIC's CONNECT revoked from the start), then, in one transaction,
the live one is renamed ``<db>_r<epoch>`` (kept, reachable by the admin only) and the new
one takes its name. Renaming needs the old database idle: the tenant role's CONNECT is
revoked for the moment of the swap and its sessions are ended, so the app reconnects to
the restored database within its pool's retry. Reads and writes only through the admin
connection and ``pg_restore`` with a 0600 passfile (no password on a command line).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from omni.errors import StepFailed
from omni.tenant.dumps import passfile_for, verify_dump

if TYPE_CHECKING:
    from omni.hosts.session import HostSession
    from omni.tenant.spec import TenantSpec

RESTORE_TIMEOUT_SECONDS = 1800.0
_SWAP_TRIES = 5
_OBJECT_IN_USE = "55006"  # SQLSTATE: the database still has sessions


@dataclass(frozen=True)
class Restored:
    database: str
    replaced: str  # the database that was live before, kept under this name
    dump: str


def restore_database(session: HostSession, spec: TenantSpec, dump: str, now: datetime
                     ) -> Restored:
    """Restore ``dump`` as the tenant's database; see the module docstring. Raises
    ``StepFailed`` (the live database untouched) when the dump does not read back or
    ``pg_restore`` fails; the half-restored new database is dropped then."""
    from psycopg import sql

    verify_dump(session.transport, dump)
    stamp = str(int(now.timestamp()))
    live, staging, replaced = spec.db_name, f"{spec.db_name}_n{stamp}", f"{spec.db_name}_r{stamp}"
    role = sql.Identifier(spec.role_name)
    with session.postgres() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {} TEMPLATE template0").format(
            sql.Identifier(staging), role))
        conn.execute(sql.SQL("REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC").format(
            sql.Identifier(staging)))
    try:
        _pg_restore(session, staging, dump)
    except StepFailed:
        with session.postgres() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(staging)))
        raise
    _swap(session, spec.role_name, live, staging, replaced)
    return Restored(live, replaced, dump)


def _pg_restore(session: HostSession, database: str, dump: str) -> None:
    pg = session.host.postgres
    password = session.admin_password()
    with passfile_for(session.transport, dump, pg.host, pg.port, database, pg.admin_user,
                      password) as passfile:
        result = session.transport.run(
            ["env", f"PGPASSFILE={passfile}", "pg_restore", "--exit-on-error", "--no-password",
             f"--host={pg.host}", f"--port={pg.port}", f"--username={pg.admin_user}",
             f"--dbname={database}", dump],
            check=False, timeout=RESTORE_TIMEOUT_SECONDS, secrets=[password],
        )
    if not result.ok:
        lines = result.stderr.decode("utf-8", "replace").strip().splitlines()
        raise StepFailed(
            f"pg_restore of {dump} into {database} failed: {lines[-1] if lines else 'no output'}",
            dump=dump,
        )


def _swap(session: HostSession, role: str, live: str, staging: str, replaced: str) -> None:
    from psycopg import sql

    ident = sql.Identifier
    with session.postgres() as conn:
        conn.execute(sql.SQL("REVOKE CONNECT ON DATABASE {} FROM {}").format(ident(live),
                                                                             ident(role)))
        try:
            for attempt in range(_SWAP_TRIES):
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()", (live,))
                try:
                    with conn.connection.transaction():
                        conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                            ident(live), ident(replaced)))
                        conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                            ident(staging), ident(live)))
                    break
                except StepFailed as exc:
                    if exc.fields.get("sqlstate") != _OBJECT_IN_USE:
                        raise
                    if attempt == _SWAP_TRIES - 1:
                        raise StepFailed(
                            f"database {live} stayed in use; restore left in {staging}"
                        ) from None
                    time.sleep(0.2 * (attempt + 1))
        finally:
            # Whichever database now bears the live name is the tenant's to connect to.
            conn.execute(sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(
                ident(live), ident(role)))
