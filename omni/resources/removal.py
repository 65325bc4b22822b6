"""Resources whose desired state is "gone": what ``omni tenant destroy`` converges to.

Each observes whether its thing still exists, plans DELETE (or NOOP) and deletes it. Like
every resource they never check a dry-run flag. Deleting is idempotent: a thing already
gone is a no-op, so a destroy killed half-way is finished by running it again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from omni import validation
from omni.engine.step import FieldChange, Step, Verb, noop
from omni.errors import InvalidInput, StepFailed
from omni.nginx import NGINX_LOCK, NGINX_LOCK_WAIT_SECONDS, nginx_error_line
from omni.resources.postgres import database_exists, role_exists
from omni.tenant.dumps import pg_dump, verify_dump

if TYPE_CHECKING:
    from omni.hosts.session import HostSession
    from omni.inventory.models import NginxSettings


def _delete(key: str, what: str, before: str) -> list[Step]:
    return [Step(key, Verb.DELETE, f"delete {what}", (FieldChange(key, before, None),))]


@dataclass(frozen=True)
class DatabaseDump:
    """A final ``pg_dump`` of the tenant database, kept on the host (0600) before deletion.

    Taken and read back by :mod:`omni.tenant.dumps` (0600, a temporary passfile, so no
    password on a command line); a dump that does not read back fails the step, and so the
    destroy, before anything is removed.
    """

    database: str
    user: str
    password: str = field(repr=False)
    pg_host: str
    pg_port: int
    dump_path: str
    key: str = "postgres.dump"

    def observe(self, session: HostSession) -> bool:
        return database_exists(session, self.database)

    def plan(self, current: bool) -> list[Step]:
        if not current:
            return [noop(self.key, f"database {self.database} already gone: nothing to dump")]
        return [
            Step(
                self.key,
                Verb.RUN,
                f"pg_dump {self.database} to {self.dump_path} (kept)",
                (FieldChange("dump", None, self.dump_path),),
            )
        ]

    def apply(self, session: HostSession, step: Step) -> None:
        pg_dump(
            session.transport,
            pg_host=self.pg_host,
            pg_port=self.pg_port,
            database=self.database,
            user=self.user,
            password=self.password,
            path=self.dump_path,
        )
        verify_dump(session.transport, self.dump_path)


@dataclass(frozen=True)
class ContainerAbsent:
    key: str
    name: str

    def observe(self, session: HostSession) -> str | None:
        found = session.docker().container(self.name)
        return None if found is None else found.status

    def plan(self, current: str | None) -> list[Step]:
        if current is None:
            return [noop(self.key, f"container {self.name} already gone")]
        return _delete(self.key, f"container {self.name}", current)

    def apply(self, session: HostSession, step: Step) -> None:
        session.docker().remove(self.name, force=True)


@dataclass(frozen=True)
class PathAbsent:
    """A directory tree omni made for one tenant: exactly ``<root>/<slug>``.

    The recursive delete is built from the slug, so the path is checked when the resource
    is made: ``root`` absolute and at least two levels deep, ``slug`` a valid slug, no
    ``..`` anywhere. Anything else is refused (``InvalidInput``) before a plan exists.
    """

    key: str
    root: str
    slug: str

    def __post_init__(self) -> None:
        parts = [p for p in self.root.split("/") if p]
        try:
            validation.check_slug(self.slug)
            slug_ok = True
        except ValueError:
            slug_ok = False
        if not self.root.startswith("/") or len(parts) < 2 or ".." in parts or not slug_ok:
            raise InvalidInput(
                f"{self.key}: refusing to delete {self.root}/{self.slug}: not a tenant "
                "directory under one of omni's own roots", field=self.key)

    @property
    def path(self) -> str:
        return f"{self.root.rstrip('/')}/{self.slug}"

    def observe(self, session: HostSession) -> bool:
        return session.transport.run(["test", "-e", self.path], check=False).ok

    def plan(self, current: bool) -> list[Step]:
        if not current:
            return [noop(self.key, f"{self.path} already gone")]
        return _delete(self.key, self.path, "present")

    def apply(self, session: HostSession, step: Step) -> None:
        session.transport.run(["rm", "-rf", "--", self.path])


@dataclass(frozen=True)
class VhostAbsent:
    """Remove the tenant's vhost: delete, ``nginx -t``, reload; restore it if the test fails."""

    path: str
    nginx: NginxSettings
    key: str = "nginx.vhost"

    def observe(self, session: HostSession) -> bytes | None:
        return session.transport.read_file(self.path)

    def plan(self, current: bytes | None) -> list[Step]:
        if current is None:
            return [noop(self.key, f"{self.path} already gone")]
        return _delete(self.key, f"vhost {self.path} and reload nginx", "present")

    def apply(self, session: HostSession, step: Step) -> None:
        with session.lock(NGINX_LOCK, wait_seconds=NGINX_LOCK_WAIT_SECONDS):
            self._remove(session)

    def _remove(self, session: HostSession) -> None:
        transport = session.transport
        previous = transport.read_file(self.path)
        transport.remove_file(self.path)
        tested = transport.run(self.nginx.test_command, check=False)
        if not tested.ok:
            if previous is not None:
                transport.write_file(self.path, previous, mode=0o644)
            raise StepFailed(
                f"nginx -t failed without {self.path}; vhost restored: {nginx_error_line(tested)}"
            )
        transport.run(self.nginx.reload_command)


@dataclass(frozen=True)
class DatabaseAbsent:
    database: str
    key: str = "postgres.database"

    def observe(self, session: HostSession) -> bool:
        return database_exists(session, self.database)

    def plan(self, current: bool) -> list[Step]:
        if not current:
            return [noop(self.key, f"database {self.database} already gone")]
        return _delete(self.key, f"database {self.database}", self.database)

    def apply(self, session: HostSession, step: Step) -> None:
        from psycopg import sql

        with session.postgres() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(self.database)
                )
            )


@dataclass(frozen=True)
class OwnedDatabasesAbsent:
    """Databases the tenant's role still owns besides its live one: those a restore kept
    (``<db>_r<epoch>``) or left half-made (``<db>_n<epoch>``, see
    :mod:`omni.tenant.restore`). Chosen by owner, never by name, so another tenant's
    database (whose name may look alike) is never touched."""

    role: str
    live: str
    key: str = "postgres.kept_databases"

    def observe(self, session: HostSession) -> tuple[str, ...]:
        with session.postgres() as conn:
            rows = conn.execute(
                "SELECT d.datname FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba "
                "WHERE r.rolname = %s AND d.datname <> %s ORDER BY 1",
                (self.role, self.live),
            ).fetchall()
        return tuple(str(row[0]) for row in rows)

    def plan(self, current: tuple[str, ...]) -> list[Step]:
        if not current:
            return [noop(self.key, f"no other database owned by {self.role}")]
        return _delete(self.key, f"database(s) kept by restores: {', '.join(current)}",
                       ", ".join(current))

    def apply(self, session: HostSession, step: Step) -> None:
        from psycopg import sql

        for name in self.observe(session):
            with session.postgres() as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(name)))


@dataclass(frozen=True)
class RoleAbsent:
    role: str
    key: str = "postgres.role"

    def observe(self, session: HostSession) -> bool:
        return role_exists(session, self.role)

    def plan(self, current: bool) -> list[Step]:
        if not current:
            return [noop(self.key, f"role {self.role} already gone")]
        return _delete(self.key, f"role {self.role}", self.role)

    def apply(self, session: HostSession, step: Step) -> None:
        from psycopg import sql

        with session.postgres() as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(self.role)))
