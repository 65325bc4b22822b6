"""Tenant database dumps on the host: the one module that owns their names and format.

Format: ``pg_dump --format=custom``, written by the host under ``umask 077`` (0600 from its
first byte) into ``postgres.dump_dir``, named ``<slug>-<YYYYmmddTHHMMSSZ>.dump`` (UTC).
A dump counts only once ``pg_restore --list`` has read it back. No password is ever on a
command line: ``pg_dump`` reads a temporary 0600 passfile, removed whatever happens.
Retention (``postgres.dump_retention``): keep the newest ``keep`` per tenant and anything
younger than ``keep_days``; never the dump just taken.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from omni.errors import StepFailed

if TYPE_CHECKING:
    from omni.inventory.models import Host
    from omni.transport.base import Transport

STAMP = "%Y%m%dT%H%M%SZ"
DUMP_TIMEOUT_SECONDS = 1800.0


@dataclass(frozen=True)
class Dump:
    path: str
    size: int
    entries: int  # table-of-contents entries pg_restore --list read back


def dump_path(host: Host, slug: str, when: datetime) -> str:
    return f"{host.postgres.dump_dir}/{slug}-{when.strftime(STAMP)}.dump"


def fetched_dump_path(host: Host, slug: str, snapshot: str) -> str:
    """Where a dump read back from the backup repository is put for a restore (0600,
    removed afterwards; never matched by :func:`dump_name_pattern`, so never pruned)."""
    return f"{host.postgres.dump_dir}/{slug}-restic-{snapshot}.dump"


def dump_name_pattern(slug: str) -> re.Pattern[str]:
    """Exactly this tenant's dumps (``acme`` never matches ``acme-outdoor``'s)."""
    return re.compile(rf"^{re.escape(slug)}-(\d{{8}}T\d{{6}}Z)\.dump$")


def _pgpass_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


@contextmanager
def passfile_for(
    transport: Transport, near: str, pg_host: str, pg_port: int, database: str, user: str,
    password: str,
) -> Iterator[str]:
    """A temporary 0600 libpq passfile beside ``near`` for the ``with`` body, removed
    whatever happens. Passfiles a killed run left behind (over an hour old; libpq reads
    its passfile only when it connects) are removed first."""
    directory, name = near.rsplit("/", 1)
    transport.run(["mkdir", "-p", "-m", "700", directory])
    transport.run(["find", directory, "-maxdepth", "1", "-type", "f", "-name", ".*.pgpass",
                   "-mmin", "+60", "-delete"], check=False)
    passfile = f"{directory}/.{name}.{secrets.token_hex(4)}.pgpass"
    fields = (pg_host, str(pg_port), database, user, password)
    transport.write_file(
        passfile, (":".join(_pgpass_escape(f) for f in fields) + "\n").encode(), mode=0o600
    )
    try:
        yield passfile
    finally:
        transport.remove_file(passfile)


def pg_dump(
    transport: Transport,
    *,
    pg_host: str,
    pg_port: int,
    database: str,
    user: str,
    password: str,
    path: str,
) -> None:
    """Run ``pg_dump -Fc`` of ``database`` on the host into ``path`` (0600). Not verified:
    see :func:`take_dump`."""
    with passfile_for(transport, path, pg_host, pg_port, database, user, password) as passfile:
        transport.run(
            [
                "sh", "-c", 'umask 077 && exec "$@"', "sh",
                "env", f"PGPASSFILE={passfile}",
                "pg_dump", "--format=custom", "--no-password",
                f"--host={pg_host}", f"--port={pg_port}", f"--username={user}",
                f"--file={path}", database,
            ],
            timeout=DUMP_TIMEOUT_SECONDS,
            secrets=[password],
        )


def verify_dump(transport: Transport, path: str) -> Dump:
    """``pg_restore --list`` reads the whole table of contents back; raises ``StepFailed``
    when it cannot (a truncated or damaged dump). A database with nothing in it gives a
    dump whose header pg_restore reads and whose list is empty: valid, with 0 entries."""
    listed = transport.run(["pg_restore", "--list", path], check=False, timeout=300)
    lines = listed.text().splitlines()
    entries = [line for line in lines if line and not line.startswith(";")]
    header = any(line.startswith(";     TOC Entries:") for line in lines)
    if not listed.ok or not header:
        reason = listed.stderr.decode("utf-8", "replace").strip().splitlines()
        raise StepFailed(
            f"dump {path} does not read back with pg_restore --list"
            + (f": {reason[-1]}" if reason else ""),
            dump=path,
        )
    found = transport.stat(path)
    size = transport.run(["stat", "-c", "%s", path]).text().strip()
    if found is None or found.mode != 0o600:
        raise StepFailed(f"dump {path} is not private (mode must be 0600)", dump=path)
    return Dump(path, int(size or 0), len(entries))


def take_dump(
    transport: Transport,
    host: Host,
    slug: str,
    database: str,
    *,
    user: str,
    password: str,
    now: datetime,
) -> Dump:
    """A verified dump of the tenant's database, named by tenant and time."""
    path = dump_path(host, slug, now)
    pg_dump(transport, pg_host=host.postgres.host, pg_port=host.postgres.port,
            database=database, user=user, password=password, path=path)
    return verify_dump(transport, path)


def dumps_to_prune(
    names: list[str], slug: str, keep: int, keep_days: int, now: datetime, protect: str
) -> list[str]:
    """Pure: which of the tenant's dump file ``names`` retention removes. Newest first by
    the time in the name; the newest ``keep`` stay, anything younger than ``keep_days``
    stays, ``protect`` (the dump just taken) always stays; other files are never touched."""
    pattern = dump_name_pattern(slug)
    dated = []
    for name in names:
        match = pattern.fullmatch(name)
        if match:
            dated.append((datetime.strptime(match.group(1), STAMP).replace(tzinfo=now.tzinfo),
                          name))
    dated.sort(reverse=True)
    cutoff = now - timedelta(days=keep_days)
    return [
        name for index, (when, name) in enumerate(dated)
        if index >= keep and when < cutoff and name != protect
    ]


def prune_dumps(transport: Transport, host: Host, slug: str, *, now: datetime,
                protect: str) -> list[str]:
    """Apply the host's retention to the tenant's dumps; returns the paths removed."""
    directory = host.postgres.dump_dir
    listed = transport.run(
        ["find", directory, "-maxdepth", "1", "-type", "f", "-name", f"{slug}-*.dump",
         "-printf", "%f\\n"],
        check=False,
    )
    retention = host.postgres.dump_retention
    doomed = dumps_to_prune(listed.text().split(), slug, retention.keep, retention.keep_days,
                            now, protect.rsplit("/", 1)[-1])
    paths = [f"{directory}/{name}" for name in doomed]
    if paths:
        transport.run(["rm", "-f", "--", *paths])
    return paths
