"""Host sessions: one transport per server per run, with Postgres, Docker and locks on it.

Everything opens lazily and once: the first ``.transport`` access connects (SSH or local per
``host.transport``); Postgres and Docker then ride on that same connection. Heavy libraries
(paramiko, psycopg, docker) are imported only here, when first needed.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING

from omni.errors import InvalidInput, StepFailed
from omni.hosts import lock as _lock
from omni.hosts import postgres as _pg

if TYPE_CHECKING:
    import psycopg

    from omni.hosts.docker import DockerEngine
    from omni.inventory.models import Host
    from omni.transport.base import Transport


class HostSession:
    """Access to one host for the length of one omni run. ``close()`` releases it all."""

    def __init__(self, host: Host, *, connect_timeout: float = 10.0) -> None:
        self.host = host
        self.name = host.name
        self._connect_timeout = connect_timeout
        self._transport: Transport | None = None
        self._forward: _pg.PortForward | None = None
        self._docker: DockerEngine | None = None
        self._guard = threading.RLock()

    @property
    def transport(self) -> Transport:
        """The host's transport, connected on first use (raises ``HostUnreachable`` etc.)."""
        with self._guard:
            if self._transport is None:
                if self.host.transport == "local":
                    from omni.transport.local import LocalTransport

                    self._transport = LocalTransport(self.host.name)
                else:
                    from omni.transport.ssh import SSHTransport

                    self._transport = SSHTransport(
                        self.host, connect_timeout=self._connect_timeout
                    )
            return self._transport

    # -- Postgres -----------------------------------------------------------------------

    def _pg_endpoint(self) -> tuple[str, int]:
        settings = self.host.postgres
        if self.host.transport == "local":
            return settings.host, settings.port
        with self._guard:
            if self._forward is None:
                self._forward = _pg.PortForward(self.transport, settings.host, settings.port)
            return "127.0.0.1", self._forward.port

    def _admin_password(self) -> str:
        path = self.host.postgres.admin_password_file
        data = self.transport.read_file(path)
        if data is None:
            raise StepFailed(
                f"host {self.name}: Postgres admin password file {path} does not exist",
                host=self.name,
            )
        return data.decode("utf-8").strip()

    def postgres(self, dbname: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
        """An autocommit connection as the host's admin user. Caller closes it.

        The password is read from the server's ``admin_password_file`` each time and never
        logged or put in an error.
        """
        return self.connect_as(self.host.postgres.admin_user, self._admin_password(), dbname)

    def connect_as(
        self, user: str, password: str, dbname: str
    ) -> psycopg.Connection[tuple[object, ...]]:
        """An autocommit connection as ``user`` (same tunnel as ``postgres``)."""
        address, port = self._pg_endpoint()
        forward = self._forward
        if forward is not None:
            forward.last_error = None
        return _pg.connect(
            tunnel_error=lambda: forward.last_error if forward is not None else None,
            host_name=self.name,
            address=address,
            port=port,
            user=user,
            password=password,
            dbname=dbname,
            connect_timeout=self._connect_timeout,
        )

    # -- Docker -------------------------------------------------------------------------

    def docker(self) -> DockerEngine:
        """The host's Docker engine (over the pinned SSH connection, or its local socket)."""
        from omni.hosts.docker import DockerEngine

        with self._guard:
            if self._docker is None:
                settings = self.host.docker
                if self.host.transport == "local":
                    self._docker = DockerEngine.local(self.name, socket_path=settings.socket)
                else:
                    self._docker = DockerEngine.over_transport(
                        self.transport, self.name, cli=settings.cli, socket_path=settings.socket
                    )
            return self._docker

    # -- locks --------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """Hold ``<state_dir>/locks/<name>.lock`` on the host; ``LockHeld`` if taken."""
        with _lock.hold(self.transport, self.name, self.host.state_dir, name):
            yield

    def close(self) -> None:
        """Release Docker, the port forward and the connection; idempotent."""
        with self._guard:
            if self._docker is not None:
                self._docker.close()
                self._docker = None
            if self._forward is not None:
                self._forward.close()
                self._forward = None
            if self._transport is not None:
                self._transport.close()
                self._transport = None

    def __enter__(self) -> HostSession:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class SessionPool:
    """One :class:`HostSession` per host name for one run. Sessions open lazily."""

    def __init__(self, hosts: Mapping[str, Host], *, connect_timeout: float = 10.0) -> None:
        self._hosts = hosts
        self._connect_timeout = connect_timeout
        self._sessions: dict[str, HostSession] = {}
        self._guard = threading.Lock()

    def get(self, name: str) -> HostSession:
        with self._guard:
            if name not in self._sessions:
                if name not in self._hosts:
                    known = ", ".join(sorted(self._hosts)) or "none"
                    raise InvalidInput(f"host {name!r}: not in the inventory (known: {known})")
                self._sessions[name] = HostSession(
                    self._hosts[name], connect_timeout=self._connect_timeout
                )
            return self._sessions[name]

    def close_all(self) -> None:
        with self._guard:
            sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            session.close()

    def __enter__(self) -> SessionPool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close_all()
