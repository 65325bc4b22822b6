"""The typed result every use case returns, and its versioned JSON envelope.

A :class:`Result` holds only redacted, JSON-able data: it is what ``--json`` prints, what a
Windmill step returns, and what the human renderer draws. Use cases build it; only the
shells render it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from omni.engine.step import Step
from omni.errors import ExitCode, OmniError

# Bump when a field of the envelope changes meaning or disappears (adding fields is fine).
ENVELOPE_VERSION = 1

Status = Literal["success", "error"]


@dataclass(frozen=True)
class Result:
    """The outcome of one command.

    ``exit_code`` is the process status the CLI exits with; it is not part of the envelope
    (the envelope's ``status`` and ``errors`` carry the same information for machines).
    """

    command: str
    status: Status = "success"
    changed: bool = False
    steps: tuple[Step, ...] = ()
    data: dict[str, Any] = field(default_factory=dict)
    errors: tuple[dict[str, Any], ...] = ()
    exit_code: ExitCode = ExitCode.OK

    @classmethod
    def success(
        cls,
        command: str,
        *,
        data: dict[str, Any] | None = None,
        steps: Sequence[Step] = (),
        changed: bool | None = None,
    ) -> Result:
        """A successful result; ``changed`` defaults to "any step changes something"."""
        steps = tuple(steps)
        if changed is None:
            changed = any(s.changing for s in steps)
        return cls(command=command, changed=changed, steps=steps, data=data or {})

    @classmethod
    def failure(
        cls,
        command: str,
        errors: Sequence[OmniError],
        *,
        data: dict[str, Any] | None = None,
        steps: Sequence[Step] = (),
        changed: bool = False,
    ) -> Result:
        """A failed result; exits with the first error's exit code."""
        if not errors:
            raise ValueError("a failed result needs at least one error")
        return cls(
            command=command,
            status="error",
            changed=changed,
            steps=tuple(steps),
            data=data or {},
            errors=tuple(e.to_dict() for e in errors),
            exit_code=errors[0].exit_code,
        )

    @property
    def ok(self) -> bool:
        return self.status == "success"

    def envelope(self) -> dict[str, Any]:
        """The versioned JSON envelope (see README, "JSON output")."""
        return {
            "omni": ENVELOPE_VERSION,
            "command": self.command,
            "status": self.status,
            "changed": self.changed,
            "steps": [s.to_dict() for s in self.steps],
            "data": self.data,
            "errors": list(self.errors),
        }


def error_envelope(command: str, error: OmniError) -> dict[str, Any]:
    """The envelope for a command that stopped on an exception before producing a result."""
    return Result.failure(command, [error]).envelope()
