"""Results shared by the use cases that apply a plan."""

from __future__ import annotations

from typing import Any

from omni.engine.engine import ApplyFailed
from omni.output.result import Result


def apply_failure(command: str, exc: ApplyFailed, data: dict[str, Any]) -> Result:
    """The failed result of an apply: the steps that ran (the failed one last), and
    ``changed`` only if one of them was applied before the failure."""
    applied = any(o.status == "applied" for o in exc.outcomes)
    return Result.failure(
        command, [exc], data=data, steps=[o.step for o in exc.outcomes], changed=applied
    )
