"""Named locks held on the server with ``flock`` for as long as our stream lives.

``flock -n FILE sh -c 'echo locked; exec cat'`` keeps the lock while ``cat`` waits on our
stream: closing the stream (or the client dying, which closes the SSH session) gives ``cat``
EOF and releases the lock, so a crashed run never leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import re
import socket
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from omni.errors import InvalidInput, LockHeld, StepFailed

if TYPE_CHECKING:
    from omni.transport.base import Stream, Transport

_LOCK_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_HELD_STATUS = 75
# $1: the lock file. Prints "locked" once held, else "exit <flock status>".
_SCRIPT = (
    'mkdir -p -- "$(dirname -- "$1")" || { echo "exit 1"; exit 1; }; '
    f'flock -n -E {_HELD_STATUS} "$1" sh -c \'echo locked; exec cat >/dev/null\'; '
    'echo "exit $?"'
)


def _read_line(stream: Stream | socket.socket, timeout: float) -> str:
    stream.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    while b"\n" not in data and time.monotonic() < deadline:
        try:
            chunk = stream.recv(256)
        except (TimeoutError, OSError):
            break
        if not chunk:
            break
        data += chunk
    stream.settimeout(None)
    return data.split(b"\n", 1)[0].decode("utf-8", "replace").strip()


def _release(stream: Stream | socket.socket) -> None:
    """EOF to ``cat``, wait for the script to finish (lock released), then close."""
    with contextlib.suppress(OSError, EOFError):
        shutdown_write = getattr(stream, "shutdown_write", None)
        if callable(shutdown_write):
            shutdown_write()
        elif isinstance(stream, socket.socket):
            stream.shutdown(socket.SHUT_WR)
        stream.settimeout(10.0)
        while stream.recv(256):
            pass
    with contextlib.suppress(OSError, EOFError):
        stream.close()


@contextlib.contextmanager
def hold(
    transport: Transport, host_name: str, state_dir: str, name: str, *, timeout: float = 15.0
) -> Iterator[None]:
    """Hold lock ``name`` on the host for the ``with`` body; raises ``LockHeld`` if taken.

    The lock file is ``<state_dir>/locks/<name>.lock`` (directory created if needed).
    """
    if not _LOCK_NAME.fullmatch(name):
        raise InvalidInput(f"lock name {name!r}: must match {_LOCK_NAME.pattern}")
    path = f"{state_dir.rstrip('/')}/locks/{name}.lock"
    stream = transport.open_process(["sh", "-c", _SCRIPT, "omni-lock", path])
    try:
        line = _read_line(stream, timeout)
    except BaseException:
        _release(stream)
        raise
    if line != "locked":
        _release(stream)
        if line == f"exit {_HELD_STATUS}":
            raise LockHeld(
                f"host {host_name}: lock {name!r} is held by another omni run",
                host=host_name,
                lock=name,
            )
        raise StepFailed(
            f"host {host_name}: cannot take lock {name!r} ({path}): "
            f"{line or 'no answer from flock'}",
            host=host_name,
        )
    try:
        yield
    finally:
        _release(stream)
