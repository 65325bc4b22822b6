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


# Role attributes a tenant role must not hold (pg_authid column -> the SQL keyword), in
# the order ``observe`` selects them.
ELEVATED = {
    "rolsuper": "SUPERUSER",
    "rolcreatedb": "CREATEDB",
    "rolcreaterole": "CREATEROLE",
    "rolreplication": "REPLICATION",
    "rolbypassrls": "BYPASSRLS",
}


@dataclass(frozen=True)
class RoleState:
    exists: bool
    password_matches: bool = False
    can_login: bool = False
    elevated: tuple[str, ...] = ()  # keywords of ELEVATED the role holds (must be none)
    member_of: tuple[str, ...] = ()  # roles it was granted (must be none)


@dataclass(frozen=True)
class TenantRole:
    """A LOGIN role with exactly the tenant's password and no privileges. Idempotent."""

    role: str
    password: str = field(repr=False)
    key: str = "postgres.role"

    def observe(self, session: HostSession) -> RoleState:
        with session.postgres() as conn:
            row = conn.execute(
                "SELECT rolpassword, rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, "
                "rolreplication, rolbypassrls FROM pg_authid WHERE rolname = %s",
                (self.role,),
            ).fetchone()
            groups = conn.execute(
                "SELECT g.rolname FROM pg_auth_members m "
                "JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles r ON r.oid = m.member "
                "WHERE r.rolname = %s ORDER BY 1",
                (self.role,),
            ).fetchall()
        if row is None:
            return RoleState(exists=False)
        return RoleState(
            exists=True,
            password_matches=verifier_matches(_text(row[0]), self.password),
            can_login=bool(row[1]),
            elevated=tuple(kw for kw, held in zip(ELEVATED.values(), row[2:], strict=True)
                           if held),
            member_of=tuple(str(g[0]) for g in groups),
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
        if current.elevated:
            changes.append(FieldChange("privileges", ", ".join(current.elevated), "none"))
        if current.member_of:
            changes.append(FieldChange("member_of", ", ".join(current.member_of), "none"))
        if not changes:
            return [noop(self.key, f"role {self.role} up to date")]
        return [Step(self.key, Verb.UPDATE, f"update role {self.role}", tuple(changes),
                     detail={"revoke": list(current.member_of)})]

    def apply(self, session: HostSession, step: Step) -> None:
        from psycopg import sql

        verb = "CREATE" if step.verb is Verb.CREATE else "ALTER"
        denied = " ".join(f"NO{keyword}" for keyword in ELEVATED.values())
        statement = sql.SQL(verb + " ROLE {} LOGIN " + denied + " PASSWORD {}").format(
            sql.Identifier(self.role), sql.Literal(scram_verifier(self.password))
        )
        with session.postgres() as conn:
            conn.execute(statement)
            for group in step.detail.get("revoke", []):
                conn.execute(sql.SQL("REVOKE {} FROM {}").format(
                    sql.Identifier(str(group)), sql.Identifier(self.role)))


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
                # Born closed to every connection: PUBLIC's default CONNECT is revoked
                # before anyone (even a superuser) can use it.
                conn.execute(sql.SQL("CREATE DATABASE {} OWNER {} ALLOW_CONNECTIONS false"
                                     ).format(db, owner))
            conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(db, owner))
            conn.execute(sql.SQL("REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC").format(db))
            conn.execute(sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(db, owner))
            conn.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(db))


def _text(value: object) -> str | None:
    return None if value is None else str(value)


MAINTENANCE_DATABASES = ("postgres", "template1")


@dataclass(frozen=True)
class MaintenanceClosed:
    """The cluster's maintenance databases refuse PUBLIC's CONNECT (host-wide, idempotent).

    Postgres grants CONNECT on ``postgres`` and ``template1`` to PUBLIC, so every tenant role
    could open a session there (and list every other tenant's database and role). Revoking
    it leaves superusers (omni's admin) unaffected; any other non-tenant role that needs
    those databases must be granted CONNECT explicitly.
    """

    key: str = "postgres.maintenance"

    def observe(self, session: HostSession) -> tuple[str, ...]:
        with session.postgres() as conn:
            rows = conn.execute(
                "SELECT datname, datacl::text[] FROM pg_database WHERE datname = ANY(%s)",
                (list(MAINTENANCE_DATABASES),),
            ).fetchall()
        return tuple(
            str(name) for name, acl in rows
            if public_can_connect([str(a) for a in acl] if isinstance(acl, list) else None)
        )

    def plan(self, current: tuple[str, ...]) -> list[Step]:
        if not current:
            return [noop(self.key, "maintenance databases closed to PUBLIC")]
        return [Step(
            self.key, Verb.UPDATE,
            f"revoke PUBLIC's CONNECT on {', '.join(current)} (tenant roles reach only "
            "their own database)",
            tuple(FieldChange(f"{name}.public_connect", "granted", "revoked") for name in current),
            detail={"databases": list(current)},
        )]

    def apply(self, session: HostSession, step: Step) -> None:
        from psycopg import sql

        with session.postgres() as conn:
            for name in step.detail.get("databases", []):
                conn.execute(sql.SQL("REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC")
                             .format(sql.Identifier(str(name))))
