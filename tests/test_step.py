"""omni/engine/step.py: steps, their JSON form, ``redacted()`` and plan fingerprints.

The fingerprint is what ``--expect-plan`` compares: it must move when anything a reviewer
saw moves (including a field change) and must not move with apply-time ``detail``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest

from omni.engine.step import FieldChange, Step, Verb, fingerprint, noop, redacted

SECRET = "s3cret-value-0123"

BASE = Step(
    resource="postgres.role",
    verb=Verb.UPDATE,
    summary="alter role acme_app",
    changes=(FieldChange("password", "old", "new"), FieldChange("login", None, "true")),
    diff="--- a\n+++ b\n-x\n+y\n",
    detail={"action": "alter", "n": 1},
)


def test_verbs_are_their_lowercase_names() -> None:
    assert [v.value for v in Verb] == [
        "create", "update", "replace", "delete", "run", "reload", "noop",
    ]


def test_to_dict_is_the_json_form_of_a_step() -> None:
    assert BASE.to_dict() == {
        "resource": "postgres.role",
        "verb": "update",
        "summary": "alter role acme_app",
        "changes": [
            {"field": "password", "before": "old", "after": "new"},
            {"field": "login", "before": None, "after": "true"},
        ],
        "diff": "--- a\n+++ b\n-x\n+y\n",
        "detail": {"action": "alter", "n": 1},
    }
    data = BASE.to_dict()
    assert type(data["verb"]) is str
    assert type(data["changes"]) is list
    json.dumps(data)  # JSON-able as is


def test_to_dict_of_a_bare_step() -> None:
    assert Step("x", Verb.RUN, "s").to_dict() == {
        "resource": "x", "verb": "run", "summary": "s", "changes": [], "diff": None,
        "detail": {},
    }


def test_noop_builds_an_unchanging_step() -> None:
    step = noop("nginx.vhost", "vhost up to date")
    assert step == Step(resource="nginx.vhost", verb=Verb.NOOP, summary="vhost up to date")
    assert (step.changes, step.diff, step.detail) == ((), None, {})
    assert step.changing is False


@pytest.mark.parametrize("verb", [v for v in Verb if v is not Verb.NOOP])
def test_every_other_verb_is_changing(verb: Verb) -> None:
    assert Step("r", verb, "s").changing is True


def _mask(text: str) -> str:
    return text.replace(SECRET, "***")


REDACT_CASES: list[tuple[str, Step, Step]] = [
    ("summary", Step("r", Verb.RUN, f"run with {SECRET}"), Step("r", Verb.RUN, "run with ***")),
    ("change-before-and-after",
     Step("r", Verb.UPDATE, "s", changes=(FieldChange("pw", SECRET, f"{SECRET}2"),)),
     Step("r", Verb.UPDATE, "s", changes=(FieldChange("pw", "***", "***2"),))),
    ("none-values-stay-none",
     Step("r", Verb.UPDATE, "s", changes=(FieldChange("pw", None, SECRET),
                                         FieldChange("x", SECRET, None))),
     Step("r", Verb.UPDATE, "s", changes=(FieldChange("pw", None, "***"),
                                         FieldChange("x", "***", None)))),
    ("diff", Step("r", Verb.UPDATE, "s", diff=f"-{SECRET}\n+new\n"),
     Step("r", Verb.UPDATE, "s", diff="-***\n+new\n")),
    ("no-diff", Step("r", Verb.UPDATE, "s", diff=None), Step("r", Verb.UPDATE, "s", diff=None)),
    # resource, verb, field names and detail are kept as they are
    ("other-fields-kept",
     Step("db.x", Verb.DELETE, "drop", changes=(FieldChange("name", "a", "b"),),
          detail={"k": "v"}),
     Step("db.x", Verb.DELETE, "drop", changes=(FieldChange("name", "a", "b"),),
          detail={"k": "v"})),
]


@pytest.mark.parametrize(("case", "step", "expected"), REDACT_CASES,
                         ids=[c[0] for c in REDACT_CASES])
def test_redacted_passes_every_text_field_through_redact(case: str, step: Step,
                                                        expected: Step) -> None:
    assert redacted(step, _mask) == expected


def test_redacted_never_calls_redact_on_none() -> None:
    seen: list[object] = []

    def redact(value: str) -> str:
        seen.append(value)
        return value.upper()

    step = Step("r", Verb.UPDATE, "sum", changes=(FieldChange("f", None, "a"),), diff=None)
    assert redacted(step, redact) == Step(
        "r", Verb.UPDATE, "SUM", changes=(FieldChange("f", None, "A"),), diff=None
    )
    assert sorted(map(str, seen)) == ["a", "sum"]


# A plan and its fingerprint, pinned: the form is 16 lowercase hex digits of the sha256 of the
# reviewed fields as sorted-key JSON. A change here breaks every reviewed plan in flight.
PINNED = (BASE, Step("nginx.vhost", Verb.CREATE, "write vhost"))


def test_fingerprint_form_is_pinned() -> None:
    reviewed = [{k: v for k, v in s.to_dict().items() if k != "detail"} for s in PINNED]
    expected = hashlib.sha256(json.dumps(reviewed, sort_keys=True).encode()).hexdigest()[:16]
    assert fingerprint(PINNED) == expected == "ebc2e8fcaea76a3f"
    assert fingerprint([]) == hashlib.sha256(b"[]").hexdigest()[:16]


def _with(**fields: Any) -> Step:
    return replace(BASE, **fields)


# Each row changes one thing a reviewer saw; every one must give a new fingerprint.
REVIEWED_VARIANTS: list[tuple[str, list[Step]]] = [
    ("resource", [_with(resource="postgres.database")]),
    ("verb", [_with(verb=Verb.REPLACE)]),
    ("summary", [_with(summary="alter role acme_ro")]),
    ("diff", [_with(diff="--- a\n+++ b\n-x\n+z\n")]),
    ("diff-removed", [_with(diff=None)]),
    ("change-field", [_with(changes=(FieldChange("passwd", "old", "new"),
                                     BASE.changes[1]))]),
    ("change-before", [_with(changes=(FieldChange("password", "older", "new"),
                                      BASE.changes[1]))]),
    ("change-after", [_with(changes=(FieldChange("password", "old", "newer"),
                                     BASE.changes[1]))]),
    ("change-after-none", [_with(changes=(FieldChange("password", "old", None),
                                          BASE.changes[1]))]),
    ("change-dropped", [_with(changes=BASE.changes[:1])]),
    ("changes-reordered", [_with(changes=BASE.changes[::-1])]),
    ("step-added", [BASE, noop("x", "y")]),
    ("no-steps", []),
]


@pytest.mark.parametrize(("case", "plan"), REVIEWED_VARIANTS,
                         ids=[c[0] for c in REVIEWED_VARIANTS])
def test_fingerprint_moves_with_every_reviewed_field(case: str, plan: list[Step]) -> None:
    assert fingerprint(plan) != fingerprint([BASE])


def test_fingerprint_depends_on_step_order() -> None:
    a, b = BASE, noop("x", "y")
    assert fingerprint([a, b]) != fingerprint([b, a])


@pytest.mark.parametrize("detail", [{}, {"action": "create"}, {"secret_hash": "abc", "n": 2}])
def test_fingerprint_ignores_apply_detail(detail: dict[str, Any]) -> None:
    assert fingerprint([_with(detail=detail)]) == fingerprint([BASE])


def test_fingerprint_of_a_value_that_is_not_json_uses_its_text() -> None:
    # Typed as text, but a resource that slipped a date or a path in must still get a
    # fingerprint (its str()), not a crash at --expect-plan time.
    when = datetime(2026, 11, 25, tzinfo=UTC)
    odd = _with(changes=(FieldChange("expires", cast(str, when), cast(str, Path("/a"))),))
    same = _with(changes=(FieldChange("expires", str(when), "/a"),))
    assert fingerprint([odd]) == fingerprint([same])


def test_fingerprint_is_stable_and_short_hex() -> None:
    first = fingerprint([BASE])
    assert first == fingerprint([replace(BASE)])
    assert len(first) == 16
    assert all(ch in "0123456789abcdef" for ch in first)
