"""The tenant's Postgres role and database.

Identifiers go through ``psycopg.sql.Identifier``; the role password is sent as a SCRAM
verifier (``psycopg.sql.Literal``), never in clear text. ``CREATE DATABASE`` runs outside a
transaction (the admin connection is autocommit).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from omni.engine.step import FieldChange, Step, Verb, noop
from omni.resources.scram import scram_verifier, verifier_matches

if TYPE_CHECKING:
    from omni.hosts.session import HostSession


def database_exists(session: HostSession, name: str) -> bool:
    with session.postgres() as conn:
        row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return row is not None


def role_exists(session: HostSession, name: str) -> bool:
    with session.postgres() as conn:
        row = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
    return row is not None


@dataclass(frozen=True)
class RoleState:
    exists: bool
    password_matches: bool = False
    can_login: bool = False
    privileged: bool = False  # superuser, createdb, createrole: a tenant role must be none


@dataclass(frozen=True)
class TenantRole:
    """A LOGIN role with exactly the tenant's password and no privileges. Idempotent."""

    role: str
    password: str = field(repr=False)
    key: str = "postgres.role"

    def observe(self, session: HostSession) -> RoleState:
        with session.postgres() as conn:
            row = conn.execute(
                "SELECT rolpassword, rolcanlogin, rolsuper OR rolcreatedb OR rolcreaterole "
                "FROM pg_authid WHERE rolname = %s",
                (self.role,),
            ).fetchone()
        if row is None:
            return RoleState(exists=False)
        return RoleState(
            exists=True,
            password_matches=verifier_matches(_text(row[0]), self.password),
            can_login=bool(row[1]),
            privileged=bool(row[2]),
        )

    def plan(self, current: RoleState) -> list[Step]:
        if not current.exists:
            return [
                Step(
                    self.key,
                    Verb.CREATE,
                    f"create role {self.role} (LOGIN, password generated)",
                    (
                        FieldChange("role", None, self.role),
                        FieldChange("password", None, "********"),
                    ),
                )
            ]
        changes = []
        if not current.password_matches:
            changes.append(FieldChange("password", "********", "******** (reset)"))
        if not current.can_login:
            changes.append(FieldChange("login", "false", "true"))
        if current.privileged:
            changes.append(FieldChange("privileges", "elevated", "none"))
        if not changes:
            return [noop(self.key, f"role {self.role} up to date")]
        return [Step(self.key, Verb.UPDATE, f"update role {self.role}", tuple(changes))]

    def apply(self, session: HostSession, step: Step) -> None:
        from psycopg import sql

        verb = "CREATE" if step.verb is Verb.CREATE else "ALTER"
        statement = sql.SQL(
            verb + " ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD {}"
        ).format(sql.Identifier(self.role), sql.Literal(scram_verifier(self.password)))
        with session.postgres() as conn:
            conn.execute(statement)


@dataclass(frozen=True)
class DatabaseState:
    exists: bool
    owner: str | None = None
    public_can_connect: bool = False


def public_can_connect(acl: list[str] | None) -> bool:
    """Whether PUBLIC holds CONNECT: a NULL ACL means the defaults, which grant it."""
    if acl is None:
        return True
    return any(item.startswith("=") and "c" in item[1:].split("/", 1)[0] for item in acl)


@dataclass(frozen=True)
class TenantDatabase:
    """A database owned by the tenant role, with CONNECT revoked from PUBLIC. Idempotent."""

    database: str
    owner: str
    key: str = "postgres.database"

    def observe(self, session: HostSession) -> DatabaseState:
        with session.postgres() as conn:
            row = conn.execute(
                "SELECT pg_get_userbyid(datdba), datacl::text[] "
                "FROM pg_database WHERE datname = %s",
                (self.database,),
            ).fetchone()
        if row is None:
            return DatabaseState(exists=False)
        acl = row[1]
        return DatabaseState(
            True,
            owner=_text(row[0]),
            public_can_connect=public_can_connect(
                [str(item) for item in acl] if isinstance(acl, list) else None
            ),
        )

    def plan(self, current: DatabaseState) -> list[Step]:
        if not current.exists:
            return [
                Step(
                    self.key,
                    Verb.CREATE,
                    f"create database {self.database} owned by {self.owner}; revoke PUBLIC connect",
                    (
                        FieldChange("database", None, self.database),
                        FieldChange("owner", None, self.owner),
                        FieldChange("public_connect", None, "revoked"),
                    ),
                )
            ]
        changes = []
        if current.owner != self.owner:
            changes.append(FieldChange("owner", current.owner, self.owner))
        if current.public_can_connect:
            changes.append(FieldChange("public_connect", "granted", "revoked"))
        if not changes:
            return [noop(self.key, f"database {self.database} up to date")]
        return [Step(self.key, Verb.UPDATE, f"update database {self.database}", tuple(changes))]

    def apply(self, session: HostSession, step: Step) -> None:
        from psycopg import sql

        db, owner = sql.Identifier(self.database), sql.Identifier(self.owner)
        exists = database_exists(session, self.database)
        with session.postgres() as conn:
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(db, owner))
            conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(db, owner))
            conn.execute(sql.SQL("REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC").format(db))
            conn.execute(sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(db, owner))


def _text(value: object) -> str | None:
    return None if value is None else str(value)
