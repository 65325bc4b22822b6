"""Transactional install of one nginx config file on a host.

``install_config`` is the only way omni changes live nginx config:

1. remember the file's previous bytes (or that it was absent);
2. write the new bytes atomically (mode 0644);
3. run the host's ``nginx.test_command``; on failure restore the previous bytes (or remove
   the new file) and raise ``StepFailed`` quoting nginx's error line. The running nginx was
   never reloaded, so nothing served changed;
4. run ``reload_command`` (a reload, never a restart: other tenants keep serving);
5. poll ``check_live`` until it reports the new config is serving, within a deadline. nginx
   -t does not bind ports and a reload whose new config cannot bind returns 0 while the old
   config keeps serving, so a clean reload proves nothing by itself. If the check does not
   pass in time: restore the previous bytes, reload, raise ``StepFailed``.

Not safe against a concurrent omni run changing the same host's nginx: the caller holds the
host lock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from omni.errors import StepFailed
from omni.inventory.models import NginxSettings
from omni.transport.base import CommandResult, Transport

# Returns None when the new config is serving, else a one-line reason it is not (yet).
LiveCheck = Callable[[], "str | None"]

CONFIG_MODE = 0o644
# Host-wide lock name serialising nginx config changes and reloads across omni runs.
NGINX_LOCK = "nginx"
# How long a run waits for another run's nginx change on the same host.
NGINX_LOCK_WAIT_SECONDS = 60.0


@dataclass(frozen=True)
class Clock:
    """Injected time, so the polling loop is testable without real waiting."""

    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


@dataclass(frozen=True)
class InstallOptions:
    live_deadline_seconds: float = 20.0
    poll_interval_seconds: float = 0.25
    # After a reload, workers of the old config may still accept a connection or two while
    # they shut down, so one good answer is not proof: require several in a row.
    consecutive_passes: int = 3
    command_timeout_seconds: float = 60.0
    clock: Clock = field(default_factory=Clock)


def nginx_error_line(result: CommandResult) -> str:
    """The most telling line of nginx's output: the first ``[emerg]``/``[alert]`` line, else
    the last non-empty line, else the exit status."""
    lines = [
        line.strip()
        for line in (result.stderr + b"\n" + result.stdout).decode("utf-8", "replace").splitlines()
        if line.strip()
    ]
    for marker in ("[emerg]", "[alert]", "[crit]", "[error]"):
        for line in lines:
            if marker in line:
                return line
    return lines[-1] if lines else f"exit status {result.exit_status}"


def _run(transport: Transport, argv: Sequence[str], options: InstallOptions) -> CommandResult:
    return transport.run(list(argv), timeout=options.command_timeout_seconds, check=False)


def _restore(transport: Transport, path: str, previous: bytes | None) -> None:
    if previous is None:
        transport.remove_file(path)
    else:
        transport.write_file(path, previous, mode=CONFIG_MODE)


def wait_live(check_live: LiveCheck, options: InstallOptions) -> str | None:
    """Poll ``check_live`` until it passes ``consecutive_passes`` times in a row, or the
    deadline passes.

    Returns None when live, else the last reason. Always checks at least once.
    """
    clock = options.clock
    deadline = clock.monotonic() + options.live_deadline_seconds
    passes = 0
    reason: str | None = "not checked"
    while True:
        reason = check_live()
        passes = passes + 1 if reason is None else 0
        if passes >= options.consecutive_passes:
            return None
        if clock.monotonic() >= deadline:
            return reason or "live check passed only intermittently"
        clock.sleep(options.poll_interval_seconds)


def install_config(
    transport: Transport,
    nginx: NginxSettings,
    path: str,
    data: bytes,
    check_live: LiveCheck,
    options: InstallOptions | None = None,
) -> None:
    """Install ``data`` at ``path`` and prove it live, or leave the previous state serving.

    Reads and writes ``path``; runs the host's nginx test and reload commands. Idempotent
    (installing the same bytes again re-tests, reloads and re-verifies). Raises
    ``StepFailed`` (message quotes nginx's error or the live check's reason) after
    restoring the previous bytes; the config file never holds secrets, so the message is
    safe to show.
    """
    options = options or InstallOptions()
    previous = transport.read_file(path)
    transport.write_file(path, data, mode=CONFIG_MODE)

    tested = _run(transport, nginx.test_command, options)
    if not tested.ok:
        _restore(transport, path, previous)
        raise StepFailed(
            f"nginx config test failed for {path}, previous config restored: "
            f"{nginx_error_line(tested)}",
            path=path,
        )

    reloaded = _run(transport, nginx.reload_command, options)
    if not reloaded.ok:
        _rollback(transport, nginx, path, previous, options)
        raise StepFailed(
            f"nginx reload failed for {path}, previous config restored: "
            f"{nginx_error_line(reloaded)}",
            path=path,
        )

    reason = wait_live(check_live, options)
    if reason is not None:
        _rollback(transport, nginx, path, previous, options)
        raise StepFailed(
            f"nginx config {path} passed the test and reloaded but is not serving after "
            f"{options.live_deadline_seconds:g}s ({reason}); previous config restored",
            path=path,
        )


def _rollback(
    transport: Transport,
    nginx: NginxSettings,
    path: str,
    previous: bytes | None,
    options: InstallOptions,
) -> None:
    """Restore the previous bytes and reload, so the previous config is what serves."""
    _restore(transport, path, previous)
    if _run(transport, nginx.test_command, options).ok:
        _run(transport, nginx.reload_command, options)
