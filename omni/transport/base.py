"""The transport protocol every host session rides on.

Two implementations honour this contract (``tests/test_transport_contract.py`` runs the same
suite against both): :class:`omni.transport.ssh.SSHTransport` (paramiko, pinned host keys)
and :class:`omni.transport.local.LocalTransport` (subprocess).
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    exit_status: int
    stdout: bytes
    stderr: bytes

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    def text(self) -> str:
        return self.stdout.decode("utf-8", "replace")


@dataclass(frozen=True)
class FileStat:
    mode: int  # permission bits only, e.g. 0o600
    uid: int
    gid: int


@runtime_checkable
class Stream(Protocol):
    """A bidirectional byte stream (an SSH channel or a socket)."""

    def send(self, data: bytes) -> int: ...
    def sendall(self, data: bytes) -> None: ...
    def recv(self, size: int) -> bytes: ...
    def close(self) -> None: ...
    def settimeout(self, timeout: float | None) -> None: ...


@runtime_checkable
class Transport(Protocol):
    """Run commands and move files on one host.

    Contract:
    - ``run`` takes an argv list (never a shell string); quoting happens once, inside the
      SSH implementation. Both stdout and stderr are drained fully. ``timeout`` is enforced
      on the remote side too (the process is killed, not just abandoned). With
      ``check=True`` a non-zero exit raises :class:`omni.errors.CommandFailed` naming the
      argv with every string in ``secrets`` masked.
    - ``write_file`` is atomic: a temp file in the same directory, mode set, then renamed.
    - ``read_file`` returns ``None`` when the file does not exist.
    """

    host: str

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = 60.0,
        stdin: bytes | None = None,
        check: bool = True,
        secrets: Sequence[str] = (),
    ) -> CommandResult: ...

    def read_file(self, path: str) -> bytes | None: ...

    def stat(self, path: str) -> FileStat | None:
        """Mode and owner of ``path`` (following symlinks), or ``None`` when absent."""
        ...

    def write_file(self, path: str, data: bytes, *, mode: int = 0o644) -> None: ...

    def remove_file(self, path: str) -> None: ...

    def open_tcp(self, host: str, port: int, *, timeout: float = 10.0) -> Stream | socket.socket:
        """A TCP stream to ``host:port`` as seen from the server (SSH: direct-tcpip)."""
        ...

    def open_unix(self, path: str, *, timeout: float = 10.0) -> Stream | socket.socket:
        """A stream to the Unix socket ``path`` on the server."""
        ...

    def open_process(self, argv: Sequence[str]) -> Stream | socket.socket:
        """A stream wired to a process's stdin/stdout (for ``docker system dial-stdio``)."""
        ...

    def close(self) -> None: ...
