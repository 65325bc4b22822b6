"""One exception tree for omni.

Every error carries a stable ``code`` (machine-readable, shown as ``error[code]``), a
one-line human message and an exit status. Only the CLI edge catches these. Messages must
never contain secret values: callers redact before raising.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any


class ExitCode(IntEnum):
    """Documented process exit statuses (see README, "Exit codes")."""

    OK = 0
    CHECK_FAILED = 1  # a check ran and reported unhealthy (hosts check, health-check)
    INVALID_INPUT = 2  # bad CLI input or inventory; nothing was touched
    STEP_FAILED = 3  # a step failed while changing a host
    LOCK_HELD = 4  # another omni run holds the lock for this tenant/host
    HOST_UNREACHABLE = 5  # host unreachable, or its SSH key is unknown/changed
    INTERNAL = 70  # a bug in omni


class OmniError(Exception):
    """Base of every error omni raises on purpose."""

    code: str = "error"
    exit_code: ExitCode = ExitCode.STEP_FAILED

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.fields: dict[str, Any] = fields

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **self.fields}


class InvalidInput(OmniError):
    """Input (CLI argument or inventory file) breaks a rule. Raised before any connection."""

    code = "invalid_input"
    exit_code = ExitCode.INVALID_INPUT


class InventoryError(InvalidInput):
    code = "invalid_inventory"


class StepFailed(OmniError):
    code = "step_failed"
    exit_code = ExitCode.STEP_FAILED


class CommandFailed(StepFailed):
    """A remote or local command exited non-zero (argv is already secret-masked)."""

    code = "command_failed"


class CommandTimeout(StepFailed):
    code = "command_timeout"


class HealthGateFailed(StepFailed):
    code = "health_gate_failed"


class LockHeld(OmniError):
    code = "lock_held"
    exit_code = ExitCode.LOCK_HELD


class HostUnreachable(OmniError):
    code = "host_unreachable"
    exit_code = ExitCode.HOST_UNREACHABLE


class HostKeyMismatch(HostUnreachable):
    """The server presented a key the inventory does not pin (unknown or changed)."""

    code = "host_key_rejected"


class AuthenticationFailed(HostUnreachable):
    code = "ssh_auth_failed"


class CheckFailed(OmniError):
    code = "check_failed"
    exit_code = ExitCode.CHECK_FAILED
