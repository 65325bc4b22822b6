"""The engine's apply loop: failures become one redacted StepFailed naming the step."""

from __future__ import annotations

from typing import Any

import pytest

from omni.engine.engine import ApplyFailed, NullProgress, Plan, PlannedResource, apply_plan
from omni.engine.step import Step, Verb, noop

SECRET = "hunter2-but-longer-0123456789"


class Exploding:
    key = "test.exploding"

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.applied: list[Step] = []

    def observe(self, session: Any) -> None:
        return None

    def plan(self, current: None) -> list[Step]:
        return [Step(self.key, Verb.CREATE, "create it")]

    def apply(self, session: Any, step: Step) -> None:
        raise self.error


class Recording:
    key = "test.recording"

    def __init__(self) -> None:
        self.applied: list[Step] = []

    def observe(self, session: Any) -> None:
        return None

    def plan(self, current: None) -> list[Step]:
        return [Step(self.key, Verb.CREATE, "create it")]

    def apply(self, session: Any, step: Step) -> None:
        self.applied.append(step)


@pytest.mark.parametrize(
    "error",
    [RuntimeError(f"connection string had {SECRET}\nsecond line"), KeyError(SECRET)],
)
def test_unexpected_exception_becomes_one_redacted_line_and_stops(error: Exception) -> None:
    first, boom, after = Recording(), Exploding(error), Recording()
    plan = Plan(
        (
            PlannedResource(first, tuple(first.plan(None))),
            PlannedResource(boom, tuple(boom.plan(None))),
            PlannedResource(after, (noop(after.key, "fine"), *after.plan(None))),
        )
    )
    with pytest.raises(ApplyFailed) as caught:
        apply_plan(None, plan, NullProgress(), lambda text: text.replace(SECRET, "***"))  # type: ignore[arg-type]
    message = caught.value.message
    assert message.startswith("test.exploding: ")
    assert SECRET not in message
    assert "\n" not in message
    assert len(first.applied) == 1
    assert after.applied == []
    assert [o.status for o in caught.value.outcomes] == ["applied", "failed"]


def test_fingerprint_covers_what_was_reviewed_not_apply_detail() -> None:
    from omni.engine.step import fingerprint

    a = Step("medusa.app", Verb.CREATE, "create container", detail={"config_hash": "1"})
    b = Step("medusa.app", Verb.CREATE, "create container", detail={"config_hash": "2"})
    c = Step("medusa.app", Verb.REPLACE, "create container", detail={"config_hash": "1"})
    assert fingerprint([a]) == fingerprint([b])
    assert fingerprint([a]) != fingerprint([c])
