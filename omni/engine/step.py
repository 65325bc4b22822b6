"""Steps: the data a plan is made of.

A step holds only redacted values (secrets are masked before a step is built), so a plan
is safe to print, store, post on a pull request and fingerprint. ``apply`` reads the real
secrets from the resource's spec, never from the step.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any


class Verb(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    REPLACE = "replace"
    DELETE = "delete"
    RUN = "run"
    RELOAD = "reload"
    NOOP = "noop"


@dataclass(frozen=True)
class FieldChange:
    field: str
    before: str | None
    after: str | None


@dataclass(frozen=True)
class Step:
    resource: str  # stable key, e.g. "postgres.role", "nginx.vhost"
    verb: Verb
    summary: str  # one line for people
    changes: tuple[FieldChange, ...] = ()
    diff: str | None = None  # unified diff for files, secrets masked
    # Free-form, JSON-able, redacted data the resource's apply may need (e.g. which
    # sub-action was planned). Never a secret.
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def changing(self) -> bool:
        return self.verb is not Verb.NOOP

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["verb"] = self.verb.value
        data["changes"] = [asdict(c) for c in self.changes]
        return data


def noop(resource: str, summary: str) -> Step:
    return Step(resource=resource, verb=Verb.NOOP, summary=summary)


def fingerprint(steps: Sequence[Step]) -> str:
    """A stable digest of a plan, for ``--expect-plan`` (refuse a plan that drifted).

    Covers what a reviewer saw (resource, verb, summary, changes, diff), not ``detail``:
    that is apply-time data which may derive from values generated afresh on every run
    (a new tenant's secrets), so two plans of the same change agree.
    """
    reviewed = [{k: v for k, v in s.to_dict().items() if k != "detail"} for s in steps]
    payload = json.dumps(reviewed, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def redacted(step: Step, redact: Callable[[str], str]) -> Step:
    """``step`` with every text field passed through ``redact`` (a last line of defence:
    steps are built from masked values already)."""

    def text(value: str | None) -> str | None:
        return None if value is None else redact(value)

    return replace(
        step,
        summary=redact(step.summary),
        changes=tuple(FieldChange(c.field, text(c.before), text(c.after)) for c in step.changes),
        diff=text(step.diff),
    )
