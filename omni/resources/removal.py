"""Resources whose desired state is "gone": what ``omni tenant destroy`` converges to.

Each observes whether its thing still exists, plans DELETE (or NOOP) and deletes it. Like
every resource they never check a dry-run flag. Deleting is idempotent: a thing already
gone is a no-op, so a destroy killed half-way is finished by running it again.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from omni.engine.step import FieldChange, Step, Verb, noop
from omni.errors import StepFailed
from omni.nginx import NGINX_LOCK, NGINX_LOCK_WAIT_SECONDS, nginx_error_line
from omni.resources.postgres import database_exists, role_exists

if TYPE_CHECKING:
    from omni.hosts.session import HostSession
    from omni.inventory.models import NginxSettings


def _delete(key: str, what: str, before: str) -> list[Step]:
    return [Step(key, Verb.DELETE, f"delete {what}", (FieldChange(key, before, None),))]


@dataclass(frozen=True)
class DatabaseDump:
    """A final ``pg_dump`` of the tenant database, kept on the host (0600) before deletion.

    Runs on the host with a temporary 0600 passfile, so no password is ever on a command
    line; the passfile is removed whatever happens.
    """

    database: str
    user: str
    password: str = field(repr=False)
    pg_host: str
    pg_port: int
    dump_path: str
    passfile_path: str
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
        transport = session.transport
        directory = self.dump_path.rsplit("/", 1)[0]
        transport.run(["mkdir", "-p", "-m", "700", directory])
        # A passfile left by a killed destroy of this tenant holds the admin password.
        leftovers = posixpath.basename(self.passfile_path).rsplit("-", 1)[0] + "-*.pgpass"
        transport.run(
            ["find", directory, "-maxdepth", "1", "-name", leftovers, "-type", "f", "-delete"]
        )
        fields = (self.pg_host, str(self.pg_port), self.database, self.user, self.password)
        line = ":".join(_pgpass_escape(f) for f in fields) + "\n"
        transport.write_file(self.passfile_path, line.encode(), mode=0o600)
        try:
            transport.run(
                [
                    # umask first: the dump is private from its first byte.
                    "sh",
                    "-c",
                    'umask 077 && exec "$@"',
                    "sh",
                    "env",
                    f"PGPASSFILE={self.passfile_path}",
                    "pg_dump",
                    "--format=custom",
                    "--no-password",
                    f"--host={self.pg_host}",
                    f"--port={self.pg_port}",
                    f"--username={self.user}",
                    f"--file={self.dump_path}",
                    self.database,
                ],
                timeout=1800,
                secrets=[self.password],
            )
        finally:
            transport.remove_file(self.passfile_path)


def _pgpass_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


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
    """A file or directory tree omni made (paths come from the spec, never from input)."""

    key: str
    path: str

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
