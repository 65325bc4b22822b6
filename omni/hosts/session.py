"""Host sessions: one transport per server per run, with Postgres, Docker and locks on it.

Everything opens lazily and once: the first ``.transport`` access connects (SSH or local per
``host.transport``); Postgres and Docker then ride on that same connection. The admin
Postgres password is read once per session and each database gets one admin connection,
shared by every ``postgres()`` call. Heavy libraries (paramiko, psycopg, docker) are
imported only here, when first needed.
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

    def __init__(
        self,
        host: Host,
        *,
        connect_timeout: float = 10.0,
        lock_lease_seconds: float = _lock.DEFAULT_LEASE_SECONDS,
        lock_owner: _lock.LockOwner | None = None,
    ) -> None:
        """``lock_lease_seconds``: how long a lock of this session survives without a
        heartbeat (a frozen or cut-off holder loses it then); ``lock_owner``: who is named
        in holder files (default: this process, see ``LockOwner.of_process``)."""
        self.host = host
        self.name = host.name
        self._connect_timeout = connect_timeout
        self._lock_lease_seconds = _lock.check_lease_seconds(lock_lease_seconds)
        self._lock_owner = lock_owner
        self._transport: Transport | None = None
        self._forward: _pg.PortForward | None = None
        self._admin_secret: str | None = None  # never logged, never in an error
        self._admin_connections: dict[str, psycopg.Connection[tuple[object, ...]]] = {}
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
            return self._forward.directory, self._forward.port

    def _admin_password(self) -> str:
        with self._guard:
            if self._admin_secret is None:
                path = self.host.postgres.admin_password_file
                data = self.transport.read_file(path)
                if data is None:
                    raise StepFailed(
                        f"host {self.name}: Postgres admin password file {path} does not exist",
                        host=self.name,
                    )
                self._admin_secret = data.decode("utf-8").strip()
            return self._admin_secret

    def admin_password(self) -> str:
        """The Postgres admin password, for a host-side tool's 0600 passfile (``pg_dump``).
        Never log it or put it in an error or on a command line."""
        return self._admin_password()

    def postgres(self, dbname: str = "postgres") -> _pg.SharedConnection:
        """The session's autocommit admin connection to ``dbname``, for ``with ... as conn``.

        One connection per database per session, opened on first use (and again if it was
        lost), closed by ``close()``; leaving the ``with`` block does not close it. The
        password is read from the server's ``admin_password_file`` once per session and
        never logged or put in an error.
        """
        with self._guard:
            conn = self._admin_connections.get(dbname)
            if conn is None or conn.closed:
                conn = self.connect_as(
                    self.host.postgres.admin_user, self._admin_password(), dbname
                )
                self._admin_connections[dbname] = conn
            return _pg.SharedConnection(conn, self.name)

    def connect_as(
        self, user: str, password: str, dbname: str
    ) -> psycopg.Connection[tuple[object, ...]]:
        """A new autocommit connection as ``user`` (same tunnel as ``postgres``).

        The caller owns it: ``with session.connect_as(...) as conn:`` closes it.
        """
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
    def lock(self, name: str, wait_seconds: float = 0, purpose: str = "") -> Iterator[None]:
        """Hold ``<state_dir>/locks/<name>.lock`` on the host for the ``with`` body, under
        the session's lease (see :mod:`omni.hosts.lock`).

        Waits up to ``wait_seconds`` (0: not at all) for another holder to release it;
        raises ``LockHeld`` (naming the lock, its holder, since when and for what, and the
        wait) if it is still taken then. ``purpose`` (e.g. ``"deploy acme"``) is written
        to the holder file for others to read.
        """
        with _lock.hold(
            self.transport,
            self.name,
            self.host.state_dir,
            name,
            wait_seconds=wait_seconds,
            lease_seconds=self._lock_lease_seconds,
            purpose=purpose,
            owner=self._lock_owner,
        ):
            yield

    def close(self) -> None:
        """Release Postgres, Docker, the port forward and the connection; idempotent."""
        with self._guard:
            connections, self._admin_connections = list(self._admin_connections.values()), {}
            for conn in connections:
                with contextlib.suppress(Exception):
                    conn.close()
            self._admin_secret = None
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

    def __init__(
        self,
        hosts: Mapping[str, Host],
        *,
        connect_timeout: float = 10.0,
        lock_lease_seconds: float = _lock.DEFAULT_LEASE_SECONDS,
        lock_owner: _lock.LockOwner | None = None,
    ) -> None:
        """Sessions get ``connect_timeout``, ``lock_lease_seconds`` and ``lock_owner``
        (see :class:`HostSession`)."""
        self._hosts = hosts
        self._connect_timeout = connect_timeout
        self._lock_lease_seconds = lock_lease_seconds
        self._lock_owner = lock_owner
        self._sessions: dict[str, HostSession] = {}
        self._guard = threading.Lock()

    def get(self, name: str) -> HostSession:
        with self._guard:
            if name not in self._sessions:
                if name not in self._hosts:
                    known = ", ".join(sorted(self._hosts)) or "none"
                    raise InvalidInput(f"host {name!r}: not in the inventory (known: {known})")
                self._sessions[name] = HostSession(
                    self._hosts[name],
                    connect_timeout=self._connect_timeout,
                    lock_lease_seconds=self._lock_lease_seconds,
                    lock_owner=self._lock_owner,
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
