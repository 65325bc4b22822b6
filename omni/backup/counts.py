"""Row counts of a tenant's tables: taken at dump time, compared after a test restore.

The record stored beside each dump (see :mod:`omni.backup.restic`) is JSON::

    {"format": 1, "tenant": "acme", "host": "dev", "backup": "b20261202T101500Z-1a2b",
     "dump_snapshot": "0f3c9a1e", "bytes": 812345, "taken": "2026-12-02T10:15:00+00:00",
     "image": "medusa-store:2.21.2", "release": "r2026...|none",
     "tables": {"public.product": 12, ...}}

Tables are the ordinary tables of every non-system schema (extension members left out, as
``pg_dump`` leaves them out), keyed ``<schema>.<table>``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from omni.errors import StepFailed

if TYPE_CHECKING:
    import psycopg

RECORD_FORMAT = 1

_TABLES = """
SELECT n.nspname, c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                  AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1, 2
"""


def table_counts(conn: psycopg.Connection[tuple[object, ...]]) -> dict[str, int]:
    """``{"schema.table": rows}`` for every table, read in ``conn``'s current transaction
    (identifiers quoted with ``psycopg.sql.Identifier``)."""
    from psycopg import sql

    counts: dict[str, int] = {}
    for schema, table in conn.execute(_TABLES).fetchall():
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}.{}").format(
            sql.Identifier(str(schema)), sql.Identifier(str(table)))).fetchone()
        counts[f"{schema}.{table}"] = int(row[0]) if row else 0  # type: ignore[call-overload]
    return counts


@dataclass(frozen=True)
class CountsRecord:
    tenant: str
    host: str
    backup: str
    dump_snapshot: str
    size: int  # bytes of the dump
    taken: str
    image: str
    release: str
    tables: Mapping[str, int] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return (json.dumps({
            "format": RECORD_FORMAT, "tenant": self.tenant, "host": self.host,
            "backup": self.backup, "dump_snapshot": self.dump_snapshot, "bytes": self.size,
            "taken": self.taken, "image": self.image, "release": self.release,
            "tables": dict(sorted(self.tables.items())),
        }, indent=1) + "\n").encode()

    @classmethod
    def from_json(cls, raw: bytes) -> CountsRecord:
        """Raises ``StepFailed`` for anything but a format-1 record."""
        try:
            data: Any = json.loads(raw)
            if not isinstance(data, dict) or data.get("format") != RECORD_FORMAT:
                raise ValueError("format")
            tables = data["tables"]
            if not isinstance(tables, dict):
                raise ValueError("tables")
            return cls(
                tenant=str(data["tenant"]), host=str(data["host"]),
                backup=str(data["backup"]), dump_snapshot=str(data["dump_snapshot"]),
                size=int(data["bytes"]), taken=str(data["taken"]),
                image=str(data["image"]), release=str(data["release"]),
                tables={str(k): int(v) for k, v in tables.items()},
            )
        except (ValueError, KeyError, TypeError):
            raise StepFailed("the backup's row-count record is not readable "
                             f"(expected format {RECORD_FORMAT})") from None


def compare_counts(recorded: Mapping[str, int], restored: Mapping[str, int]) -> list[str]:
    """Pure: every difference between the counts recorded at dump time and those of the
    restored database, one line each (empty: they agree)."""
    problems: list[str] = []
    for table in sorted(recorded):
        if table not in restored:
            problems.append(f"table {table} is missing after restore")
        elif restored[table] != recorded[table]:
            problems.append(f"table {table}: {restored[table]} row(s) restored, "
                            f"{recorded[table]} recorded at dump time")
    problems += [f"table {table} was not in the dump's record"
                 for table in sorted(set(restored) - set(recorded))]
    return problems
