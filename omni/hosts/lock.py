"""Named locks held on the server with ``flock`` for as long as our stream lives.

``flock -n FILE sh -c 'echo locked; exec cat'`` keeps the lock while ``cat`` waits on our
stream: closing the stream (or the client dying, which closes the SSH session) gives ``cat``
EOF and releases the lock, so a crashed run never leaves a stale lock behind. With a wait,
``flock -w SECONDS`` queues on the server until the holder lets go or the deadline passes.
"""

from __future__ import annotations

import contextlib
import math
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
# $1: the lock file; the rest: flock's wait option (-n, or -w SECONDS), passed as argv so
# nothing is pasted into the script. Prints "locked" once held, else "exit <flock status>".
_SCRIPT = (
    'path=$1; shift; '
    'mkdir -p -- "$(dirname -- "$path")" || { echo "exit 1"; exit 1; }; '
    f'flock "$@" -E {_HELD_STATUS} "$path" sh -c \'echo locked; exec cat >/dev/null\'; '
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
    transport: Transport,
    host_name: str,
    state_dir: str,
    name: str,
    *,
    wait_seconds: float = 0,
    timeout: float = 15.0,
) -> Iterator[None]:
    """Hold lock ``name`` on the host for the ``with`` body.

    ``wait_seconds`` 0 fails at once if the lock is taken; otherwise the server-side
    ``flock`` waits up to that long for the holder to let go. Either way a lock still held
    at the deadline raises ``LockHeld`` naming the lock and the wait. ``timeout`` bounds the
    answer from the server on top of the wait. The lock file is
    ``<state_dir>/locks/<name>.lock`` (directory created if needed).
    """
    if not _LOCK_NAME.fullmatch(name):
        raise InvalidInput(f"lock name {name!r}: must match {_LOCK_NAME.pattern}")
    if not (math.isfinite(wait_seconds) and wait_seconds >= 0):
        raise InvalidInput(f"lock {name!r}: wait_seconds must be a finite number >= 0")
    path = f"{state_dir.rstrip('/')}/locks/{name}.lock"
    mode = ["-w", f"{wait_seconds:.3f}"] if wait_seconds > 0 else ["-n"]
    stream = transport.open_process(["sh", "-c", _SCRIPT, "omni-lock", path, *mode])
    try:
        line = _read_line(stream, wait_seconds + timeout)
    except BaseException:
        _release(stream)
        raise
    if line != "locked":
        _release(stream)
        if line == f"exit {_HELD_STATUS}":
            waited = f"waited {wait_seconds:g}s" if wait_seconds > 0 else "did not wait"
            raise LockHeld(
                f"host {host_name}: lock {name!r} is held by another omni run ({waited})",
                host=host_name,
                lock=name,
                waited_seconds=wait_seconds,
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
