"""Postgres through the host's transport: a local port forward and psycopg connections.

The forward listens on 127.0.0.1:<ephemeral>; each accepted connection is pumped, in two
daemon threads, to a fresh ``transport.open_tcp(pg_host, pg_port)`` stream (on SSH: a
``direct-tcpip`` channel of the host's one connection).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from omni.errors import StepFailed

if TYPE_CHECKING:
    import psycopg

    from omni.transport.base import Stream, Transport


def _pump(source: Stream | socket.socket, sink: Stream | socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except (OSError, EOFError):
        pass
    finally:
        # Either side ending ends the pair: Postgres speaks request/response.
        with contextlib.suppress(OSError, EOFError):
            sink.close()
        with contextlib.suppress(OSError, EOFError):
            source.close()


class PortForward:
    """Listen on 127.0.0.1:0 and forward every connection to ``target`` via ``transport``."""

    def __init__(self, transport: Transport, target_host: str, target_port: int) -> None:
        self._transport = transport
        self._target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
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
            threading.Thread(target=_pump, args=(client, remote), daemon=True).start()
            threading.Thread(target=_pump, args=(remote, client), daemon=True).start()

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()


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
