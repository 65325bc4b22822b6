"""Postgres through the host's transport: a local forward and psycopg connections.

The forward listens on a Unix socket ``<dir>/.s.PGSQL.<port>`` in a fresh 0700 temporary
directory, so no other local user can reach the tunnel (a 127.0.0.1 TCP port would be open
to every local user for the whole run). libpq finds the socket from ``host=<dir>`` and
``port=<port>``. Each accepted connection is pumped, in two daemon threads, to a fresh
``transport.open_tcp(pg_host, pg_port)`` stream (on SSH: a ``direct-tcpip`` channel of the
host's one connection).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import threading
import weakref
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING

from omni.errors import StepFailed

if TYPE_CHECKING:
    import psycopg
    from psycopg.abc import Params, QueryNoTemplate

    from omni.transport.base import Stream, Transport

# sun_path holds 108 bytes on Linux; leave room for the socket's own name.
_MAX_SOCKET_DIR = 80


def _pump(
    source: Stream | socket.socket, sink: Stream | socket.socket, ended: threading.Lock
) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except (OSError, EOFError):
        pass
    finally:
        # Either side ending ends the pair (Postgres speaks request/response), torn down
        # once, by the first pump to stop. The local socket is shut down first: a bare
        # close() neither wakes the other pump blocked in recv() on it nor sends EOF to
        # psycopg, which would then wait forever. The SSH channel is only closed: paramiko
        # sends a shutdown's EOF after releasing the channel's lock, so a CLOSE answering
        # the server's can overtake it, and sshd drops the whole connection for an EOF on
        # a channel it has freed. close() sends EOF and CLOSE together, in order.
        if ended.acquire(blocking=False):
            for end in (sink, source):
                if isinstance(end, socket.socket):
                    with contextlib.suppress(OSError):
                        end.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError, EOFError):
                    end.close()


def _private_dir() -> str:
    """A fresh 0700 directory (``mkdtemp``) short enough to hold a socket path."""
    base = tempfile.gettempdir()
    if len(base) > _MAX_SOCKET_DIR - 20:
        # Safe in a shared /tmp: mkdtemp makes a new, randomly named 0700 directory.
        base = "/tmp"  # noqa: S108
    return tempfile.mkdtemp(prefix="omni-pg-", dir=base)


class PortForward:
    """Listen on a private Unix socket; forward every connection to ``target``.

    ``directory`` and ``port`` are what psycopg takes as ``host`` and ``port``. ``close``
    stops listening and removes the directory.
    """

    def __init__(self, transport: Transport, target_host: str, target_port: int) -> None:
        self._transport = transport
        self._target = (target_host, target_port)
        self.directory = _private_dir()
        self.port: int = target_port
        self.socket_path = os.path.join(self.directory, f".s.PGSQL.{self.port}")
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._listener.bind(self.socket_path)
            self._listener.listen()
        except OSError:
            self._listener.close()
            shutil.rmtree(self.directory, ignore_errors=True)
            raise
        # Also removed at interpreter exit when a run never calls close().
        self._cleanup = weakref.finalize(self, shutil.rmtree, self.directory, ignore_errors=True)
        self.last_error: str | None = None
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                remote = self._transport.open_tcp(*self._target)
            except Exception as exc:
                # Postgres only sees a dropped connection; keep the reason for the error.
                self.last_error = str(exc)
                client.close()
                continue
            ended = threading.Lock()
            threading.Thread(target=_pump, args=(client, remote, ended), daemon=True).start()
            threading.Thread(target=_pump, args=(remote, client, ended), daemon=True).start()

    def close(self) -> None:
        """Stop accepting and remove the socket and its directory; idempotent."""
        self._closed.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._cleanup()


class SharedConnection:
    """A session's shared admin connection, lent out for a ``with`` block.

    psycopg's ``Connection.__exit__`` closes the connection; this wrapper's does not, so
    ``with session.postgres() as conn:`` can be written by every caller while the session
    keeps one connection per database. The connection is autocommit: there is nothing to
    commit or roll back at the end of the block. The session closes it in ``close()``.
    """

    def __init__(
        self, connection: psycopg.Connection[tuple[object, ...]], host_name: str = "?"
    ) -> None:
        self._connection = connection
        self._host = host_name

    @property
    def connection(self) -> psycopg.Connection[tuple[object, ...]]:
        """The underlying psycopg connection (do not close it: the session owns it)."""
        return self._connection

    def execute(
        self,
        query: QueryNoTemplate,
        params: Params | None = None,
        *,
        prepare: bool | None = None,
        binary: bool = False,
    ) -> psycopg.Cursor[tuple[object, ...]]:
        """``psycopg.Connection.execute``: run one statement, return its cursor.

        A Postgres error (a statement that fails, a server that closed the connection, a
        timeout) is raised as ``StepFailed`` naming the host and the server's first line:
        never a raw psycopg exception reaching the user as a crash.
        """
        import psycopg

        try:
            return self._connection.execute(query, params, prepare=prepare, binary=binary)
        except psycopg.Error as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise StepFailed(
                f"host {self._host}: Postgres error ({type(exc).__name__}): {reason}",
                host=self._host, sqlstate=getattr(exc, "sqlstate", None),
            ) from exc

    def cursor(self) -> psycopg.Cursor[tuple[object, ...]]:
        return self._connection.cursor()

    @property
    def info(self) -> psycopg.ConnectionInfo:
        return self._connection.info

    @property
    def autocommit(self) -> bool:
        return self._connection.autocommit

    @property
    def closed(self) -> bool:
        return self._connection.closed

    def __enter__(self) -> SharedConnection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Leave the connection open: the session reuses it."""


def connect(
    *,
    host_name: str,
    address: str,
    port: int,
    user: str,
    password: str,
    dbname: str,
    connect_timeout: float,
    tunnel_error: Callable[[], str | None] = lambda: None,
) -> psycopg.Connection[tuple[object, ...]]:
    """An autocommit psycopg connection; errors never carry the password."""
    import psycopg

    try:
        return psycopg.connect(
            host=address,
            port=port,
            user=user,
            password=password,
            dbname=dbname,
            autocommit=True,
            connect_timeout=max(1, int(connect_timeout)),
            application_name="omni",
        )
    except psycopg.Error as exc:
        reason = str(exc).replace(password, "***") if password else str(exc)
        reason = " ".join(reason.split())[:300] or type(exc).__name__
        if tunnel := tunnel_error():
            reason = f"{tunnel} ({reason})"
        raise StepFailed(
            f"host {host_name}: cannot connect to Postgres as {user} to {dbname}: {reason}",
            host=host_name,
        ) from None
