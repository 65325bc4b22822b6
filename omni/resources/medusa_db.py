"""Reading (and, for invites, retiring) Medusa's own rows in a tenant's database.

Every query runs on the session's admin connection to the tenant database; identifiers go
through ``psycopg.sql.Identifier``, values through parameters. Table and column names are
those of Medusa 2.x (checked against 2.21.2: ``user``, ``invite``, ``api_key``, ``store``,
``publishable_api_key_sales_channel``). Before migrations ran (or before the database
exists) :func:`medusa_tables_ready` is false and nothing else is asked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from omni.resources.postgres import database_exists

if TYPE_CHECKING:
    from omni.hosts.session import HostSession


def medusa_tables_ready(session: HostSession, db_name: str, tables: Sequence[str]) -> bool:
    """Whether ``db_name`` exists and has every table in ``tables`` (schema ``public``)."""
    if not database_exists(session, db_name):
        return False
    with session.postgres(db_name) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename = ANY(%s)",
            (list(tables),),
        ).fetchone()
    return row is not None and row[0] == len(set(tables))


def user_exists(session: HostSession, db_name: str, email: str) -> bool:
    """Whether a (not deleted) Medusa admin user has this e-mail (case-insensitive)."""
    from psycopg import sql

    query = sql.SQL("SELECT 1 FROM {} WHERE lower(email) = lower(%s) AND deleted_at IS NULL")
    with session.postgres(db_name) as conn:
        row = conn.execute(query.format(sql.Identifier("user")), (email,)).fetchone()
    return row is not None


def pending_invite_expiry(
    session: HostSession, db_name: str, email: str, token: str
) -> datetime | None:
    """``expires_at`` of the pending (not accepted, not deleted) invite for ``email`` whose
    token is ``token``; None when there is no such invite (never issued, accepted,
    replaced or deleted)."""
    from psycopg import sql

    query = sql.SQL(
        "SELECT expires_at FROM {} WHERE token = %s AND lower(email) = lower(%s) "
        "AND NOT accepted AND deleted_at IS NULL"
    ).format(sql.Identifier("invite"))
    with session.postgres(db_name) as conn:
        row = conn.execute(query, (token, email)).fetchone()
    return row[0] if row is not None and isinstance(row[0], datetime) else None


def retire_pending_invites(session: HostSession, db_name: str, email: str) -> int:
    """Soft-delete (as Medusa's own invite deletion does) every pending invite for
    ``email``, so a new one can be issued (Medusa allows one live invite per e-mail).
    Returns how many were retired. Idempotent."""
    from psycopg import sql

    query = sql.SQL(
        "UPDATE {} SET deleted_at = now(), updated_at = now() "
        "WHERE lower(email) = lower(%s) AND NOT accepted AND deleted_at IS NULL"
    ).format(sql.Identifier("invite"))
    with session.postgres(db_name) as conn:
        return conn.execute(query, (email,)).rowcount


@dataclass(frozen=True)
class PublishableKeyFacts:
    live: bool  # a publishable key with this token exists, not deleted or revoked
    linked: bool  # ... and is linked to the store's default sales channel
    default_sales_channel: str | None


def publishable_key_facts(session: HostSession, db_name: str, token: str) -> PublishableKeyFacts:
    """What the tenant database says about the publishable key ``token``."""
    from psycopg import sql

    store = sql.SQL(
        "SELECT default_sales_channel_id FROM {} WHERE deleted_at IS NULL "
        "ORDER BY created_at LIMIT 1"
    ).format(sql.Identifier("store"))
    key = sql.SQL(
        "SELECT id FROM {} WHERE token = %s AND type = 'publishable' AND deleted_at IS NULL "
        "AND (revoked_at IS NULL OR revoked_at > now())"
    ).format(sql.Identifier("api_key"))
    link = sql.SQL(
        "SELECT 1 FROM {} WHERE publishable_key_id = %s AND sales_channel_id = %s "
        "AND deleted_at IS NULL"
    ).format(sql.Identifier("publishable_api_key_sales_channel"))
    with session.postgres(db_name) as conn:
        row = conn.execute(store).fetchone()
        channel = str(row[0]) if row is not None and row[0] is not None else None
        found = conn.execute(key, (token,)).fetchone()
        linked = (
            found is not None
            and channel is not None
            and conn.execute(link, (found[0], channel)).fetchone() is not None
        )
    return PublishableKeyFacts(live=found is not None, linked=linked, default_sales_channel=channel)
