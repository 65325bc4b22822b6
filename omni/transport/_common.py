"""Helpers shared by the SSH and local transports: secret masking and error building."""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from omni.errors import CommandFailed, CommandTimeout

# ``timeout`` exits 124 when it sent the first signal, 128+9 when it had to SIGKILL.
TIMEOUT_EXIT_STATUSES = frozenset({124, 137})


def mask(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every non-empty string of ``secrets`` replaced by ``***``."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def describe_argv(argv: Sequence[str], secrets: Sequence[str]) -> str:
    """The argv as a shell-quoted line, secrets masked, for error messages."""
    return mask(shlex.join(argv), secrets)


def last_line(data: bytes, secrets: Sequence[str]) -> str:
    lines = [ln for ln in data.decode("utf-8", "replace").splitlines() if ln.strip()]
    return mask(lines[-1].strip(), secrets)[:300] if lines else ""


def command_failed(
    host: str, argv: Sequence[str], status: int, stderr: bytes, secrets: Sequence[str]
) -> CommandFailed:
    tail = last_line(stderr, secrets)
    message = f"{host}: `{describe_argv(argv, secrets)}` exited {status}"
    if tail:
        message += f": {tail}"
    return CommandFailed(message, host=host, exit_status=status)


def command_timeout(
    host: str, argv: Sequence[str], timeout: float, secrets: Sequence[str]
) -> CommandTimeout:
    return CommandTimeout(
        f"{host}: `{describe_argv(argv, secrets)}` timed out after {timeout:g}s and was killed",
        host=host,
        timeout=timeout,
    )
