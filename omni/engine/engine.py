"""Drive resources: observe -> plan (pure) -> apply -> verify.

``plan_resources`` only reads; a dry run is calling it and stopping. ``apply_plan`` is the
only path that writes, one planned step at a time, in resource order. ``verify`` re-observes
after apply: anything left to do (other than steps that always run) is drift, i.e. a bug.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from omni.engine.step import Step, Verb, fingerprint, noop
from omni.errors import OmniError, StepFailed

if TYPE_CHECKING:
    from omni.engine.resource import Resource
    from omni.hosts.session import HostSession


class Progress(Protocol):
    def step_started(self, step: Step) -> None: ...
    def step_finished(self, step: Step, error: str | None) -> None: ...


class NullProgress:
    def step_started(self, step: Step) -> None:
        return None

    def step_finished(self, step: Step, error: str | None) -> None:
        return None


@dataclass(frozen=True)
class PlannedResource:
    resource: Resource[Any]
    steps: tuple[Step, ...]


@dataclass(frozen=True)
class Plan:
    items: tuple[PlannedResource, ...]

    @property
    def steps(self) -> list[Step]:
        return [step for item in self.items for step in item.steps]

    @property
    def changing(self) -> bool:
        return any(step.changing for step in self.steps)

    def fingerprint(self) -> str:
        return fingerprint(self.steps)


@dataclass(frozen=True)
class StepOutcome:
    step: Step
    status: str  # "applied" | "unchanged" | "failed"
    error: str | None = None


class ApplyFailed(StepFailed):
    """A step failed during apply; ``outcomes`` lists what ran before it, and it."""

    def __init__(self, message: str, outcomes: list[StepOutcome], step: Step) -> None:
        super().__init__(message, step=step.resource, verb=step.verb.value)
        self.outcomes = outcomes


def plan_resources(session: HostSession, resources: Sequence[Resource[Any]]) -> Plan:
    """Observe every resource and plan it. Reads only."""
    items = []
    for resource in resources:
        steps = resource.plan(resource.observe(session)) or [noop(resource.key, "up to date")]
        items.append(PlannedResource(resource, tuple(steps)))
    return Plan(tuple(items))


def apply_plan(
    session: HostSession,
    plan: Plan,
    progress: Progress,
    redact: Callable[[str], str],
) -> list[StepOutcome]:
    """Apply every changing step in order; stop at the first failure.

    Raises ``StepFailed`` naming the step; steps before it stay applied (a rerun plans only
    what is still missing). The outcomes of steps already applied are attached to the error
    as ``outcomes``.
    """
    outcomes: list[StepOutcome] = []
    for item in plan.items:
        for step in item.steps:
            if not step.changing:
                outcomes.append(StepOutcome(step, "unchanged"))
                continue
            progress.step_started(step)
            try:
                item.resource.apply(session, step)
            except Exception as exc:
                reason = (
                    exc.message if isinstance(exc, OmniError) else f"{type(exc).__name__}: {exc}"
                )
                message = redact(f"{step.resource}: {' '.join(reason.split())}")
                progress.step_finished(step, message)
                outcomes.append(StepOutcome(step, "failed", message))
                raise ApplyFailed(message, outcomes, step) from None
            progress.step_finished(step, None)
            outcomes.append(StepOutcome(step, "applied"))
    return outcomes


def verify(session: HostSession, resources: Sequence[Resource[Any]]) -> list[Step]:
    """Re-observe after apply; return steps still planned (drift). RUN steps excluded."""
    drift = []
    for step in plan_resources(session, resources).steps:
        if step.changing and step.verb is not Verb.RUN:
            drift.append(step)
    return drift
