"""Named locks on the server: ``flock`` held under a heartbeat lease.

On the server, ``flock FILE bash -c LOOP`` holds the lock while ``LOOP`` reads heartbeat
lines from our stream with ``read -t LEASE`` (bash, not sh: Debian's dash has no
``read -t``). The loop ends, and the lock is released, on whichever comes first:

- we close our side (a normal release; immediate);
- our client dies and its SSH connection closes (EOF);
- no heartbeat for ``LEASE`` seconds: a frozen holder, or one whose network was cut and
  whose TCP connection is half-open, loses the lock within the lease.

The holder sends a heartbeat every ``LEASE / 3`` seconds from a daemon thread while the
``with`` body runs. Once it has the lock, the server-side loop writes
``<state_dir>/locks/<name>.holder`` (JSON, 0600, written to a temp file then renamed: who,
pid, hostname, since, purpose, command) and removes it before letting go, so the file is
only ever changed by the lock's holder. A run that finds the lock taken reads that file to
say who holds it, since when and for what.

Everything the scripts need arrives as argv; nothing is pasted into a script.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from omni.errors import InvalidInput, LockHeld, OmniError, StepFailed

if TYPE_CHECKING:
    from omni.transport.base import Stream, Transport

log = logging.getLogger(__name__)

DEFAULT_LEASE_SECONDS = 30.0
_LOCK_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_HELD_STATUS = 75
_HEARTBEAT = b".\n"
_COMMAND_CHARS = 300

# Runs under flock, as bash. $1: holder file, $2: lease seconds, $3: holder JSON.
# Writes the holder file (umask 077, temp + rename), says "locked", then reads heartbeats
# until EOF or a silence of one lease; removes the holder file while still holding the lock.
_HOLD_LOOP = (
    'holder=$1; lease=$2; umask 077; tmp="$holder.tmp.$$"; '
    'printf "%s\\n" "$3" >"$tmp" && mv -f -- "$tmp" "$holder"; '
    "echo locked; "
    'while IFS= read -r -t "$lease" _; do :; done; '
    'rm -f -- "$holder" "$tmp"'
)
# $1: lock file, $2: holder file, $3: lease, $4: holder JSON; the rest: flock's wait option
# (-n, or -w SECONDS). Prints "locked" once held, else "exit <flock status>".
_SCRIPT = (
    'path=$1; holder=$2; lease=$3; info=$4; shift 4; '
    'mkdir -p -- "$(dirname -- "$path")" || { echo "exit 1"; exit 1; }; '
    f'flock "$@" -E {_HELD_STATUS} "$path" bash -c \'{_HOLD_LOOP}\' omni-lease '
    '"$holder" "$lease" "$info"; '
    'echo "exit $?"'
)


@dataclass(frozen=True)
class LockOwner:
    """Who takes locks in this process; written into every holder file."""

    who: str  # the actor, see omni.actor.actor
    pid: int
    hostname: str  # of the machine running omni
    command: str  # the omni command line, secret options masked

    @classmethod
    def of_process(
        cls, who: str | None = None, argv: Sequence[str] | None = None
    ) -> LockOwner:
        """This process: ``who`` (default: :func:`omni.actor.actor` of the environment),
        pid, hostname and ``argv`` (default ``sys.argv``) masked and shortened."""
        from omni.actor import actor
        from omni.redact import mask_argv

        args = list(sys.argv if argv is None else argv)
        if args and argv is None:
            args[0] = os.path.basename(args[0])
        command = " ".join(mask_argv(args))
        if len(command) > _COMMAND_CHARS:
            command = command[: _COMMAND_CHARS - 3] + "..."
        return cls(
            who=who if who is not None else actor(os.environ),
            pid=os.getpid(),
            hostname=socket.gethostname(),
            command=command,
        )


def check_wait_seconds(value: float, option: str = "wait_seconds") -> float:
    """``value`` if it is a finite number >= 0, else ``InvalidInput`` naming ``option``."""
    if not (math.isfinite(value) and value >= 0):
        raise InvalidInput(
            f"{option}: must be a finite number of seconds >= 0 (got {value:g})",
            field=option.lstrip("-").replace("-", "_"),
        )
    return value


def check_lease_seconds(value: float) -> float:
    """``value`` if it is a finite number of seconds >= 1, else ``InvalidInput``."""
    if not (math.isfinite(value) and value >= 1):
        raise InvalidInput(
            f"lock lease: must be a finite number of seconds >= 1 (got {value:g})",
            field="lock_lease_seconds",
        )
    return value


def describe_holder(raw: bytes | None) -> str:
    """One phrase naming the holder from a holder file's bytes: ``held by WHO (pid P on
    HOST) since WHEN for 'PURPOSE'``; ``held by another omni run`` if unknown. Pure."""
    try:
        info = json.loads(raw or b"")
    except ValueError:
        info = None
    if not isinstance(info, dict) or not info.get("who"):
        return "held by another omni run"
    text = f"held by {info['who']}"
    if info.get("pid") or info.get("hostname"):
        text += f" (pid {info.get('pid', '?')} on {info.get('hostname', '?')})"
    if info.get("since"):
        text += f" since {info['since']}"
    if info.get("purpose"):
        text += f" for {info['purpose']!r}"
    return text


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
    """EOF to the loop, wait for the script to finish (lock released), then close."""
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


class _Heartbeat:
    """A daemon thread sending one heartbeat line every ``interval`` seconds until stopped.

    A failed send ends the thread (the connection is gone; the lease will lapse on the
    server) with a warning: the ``with`` body may then be running without the lock.
    """

    def __init__(self, stream: Stream | socket.socket, interval: float, what: str) -> None:
        self._stream = stream
        self._interval = interval
        self._what = what
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"omni-lease {what}",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._stream.sendall(_HEARTBEAT)
            except Exception as exc:  # any failure means the same: no more heartbeats
                if not self._stop.is_set():
                    log.warning("%s: heartbeat failed (%s); the lease will lapse",
                                self._what, type(exc).__name__)
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self._interval + 5)


@contextlib.contextmanager
def hold(
    transport: Transport,
    host_name: str,
    state_dir: str,
    name: str,
    *,
    wait_seconds: float = 0,
    timeout: float = 15.0,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    purpose: str = "",
    owner: LockOwner | None = None,
    clock: Callable[[], datetime] | None = None,
) -> Iterator[None]:
    """Hold lock ``name`` on the host for the ``with`` body, under a heartbeat lease.

    ``wait_seconds`` 0 fails at once if the lock is taken; otherwise the server-side
    ``flock`` waits up to that long for the holder to let go. Either way a lock still held
    at the deadline raises ``LockHeld`` whose message names the lock, the holder (who,
    pid, host, since, purpose, from the holder file) and the wait. ``timeout`` bounds the
    answer from the server on top of the wait. ``lease_seconds``: how long the server keeps
    the lock without a heartbeat (>= 1; heartbeats go every third of it). ``purpose`` and
    ``owner`` (default: :meth:`LockOwner.of_process`) go into the holder file, with the
    time from ``clock`` (default: now, UTC). The lock
    file is ``<state_dir>/locks/<name>.lock`` (directory created if needed).
    Raises ``InvalidInput`` for a bad name, wait or lease; ``StepFailed`` if flock fails.
    """
    if not _LOCK_NAME.fullmatch(name):
        raise InvalidInput(f"lock name {name!r}: must match {_LOCK_NAME.pattern}")
    check_wait_seconds(wait_seconds)
    check_lease_seconds(lease_seconds)
    owner = owner or LockOwner.of_process()
    now = clock() if clock is not None else datetime.now(UTC)
    locks = f"{state_dir.rstrip('/')}/locks"
    path, holder_path = f"{locks}/{name}.lock", f"{locks}/{name}.holder"
    info = json.dumps(
        {
            "who": owner.who,
            "pid": owner.pid,
            "hostname": owner.hostname,
            "since": now.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "purpose": purpose,
            "command": owner.command,
            "lease_seconds": lease_seconds,
        },
        separators=(",", ":"),
    )
    mode = ["-w", f"{wait_seconds:.3f}"] if wait_seconds > 0 else ["-n"]
    stream = transport.open_process(
        ["sh", "-c", _SCRIPT, "omni-lock", path, holder_path, f"{lease_seconds:.3f}", info, *mode]
    )
    try:
        line = _read_line(stream, wait_seconds + timeout)
    except BaseException:
        _release(stream)
        raise
    if line != "locked":
        _release(stream)
        if line == f"exit {_HELD_STATUS}":
            raise _held(transport, host_name, name, holder_path, wait_seconds)
        raise StepFailed(
            f"host {host_name}: cannot take lock {name!r} ({path}): "
            f"{line or 'no answer from flock'}",
            host=host_name,
        )
    heartbeat = _Heartbeat(stream, lease_seconds / 3, f"host {host_name}: lock {name!r}")
    heartbeat.start()
    try:
        yield
    finally:
        heartbeat.stop()
        _release(stream)


def _held(
    transport: Transport, host_name: str, name: str, holder_path: str, wait_seconds: float
) -> LockHeld:
    try:
        raw = transport.read_file(holder_path)
    except OmniError:
        raw = None
    holder = _holder_fields(raw)
    waited = f"waited {wait_seconds:g}s" if wait_seconds > 0 else "did not wait"
    return LockHeld(
        f"host {host_name}: lock {name!r} is {describe_holder(raw)} ({waited})",
        host=host_name,
        lock=name,
        waited_seconds=wait_seconds,
        holder=holder,
    )


def _holder_fields(raw: bytes | None) -> Mapping[str, Any] | None:
    try:
        info = json.loads(raw or b"")
    except ValueError:
        return None
    return info if isinstance(info, dict) else None
