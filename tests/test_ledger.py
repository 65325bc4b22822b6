"""The release ledger's folding rules (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from omni.releases import ledger


def _events(*releases: tuple[str, str, dict[str, Any] | None]) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for release, image, finished in releases:
        events.append({"event": "started", "release": release, "kind": "deploy",
                       "image": image, "when": f"t-{release}", "who": "ops"})
        if finished is not None:
            events.append({"event": "finished", "release": release, **finished})
    return events


def test_a_started_release_without_finish_is_interrupted() -> None:
    history = ledger.fold(_events(("r1", "v1", {"result": "succeeded"}), ("r2", "v2", None)))
    assert [r.status for r in history] == ["succeeded", "interrupted"]
    assert ledger.current(history) is not None and ledger.current(history).release == "r1"


def test_a_later_finish_settles_an_interrupted_release() -> None:
    events = _events(("r1", "v1", {"result": "succeeded"}), ("r2", "v2", None))
    events.append({"event": "finished", "release": "r2", "result": "abandoned"})
    assert [r.status for r in ledger.fold(events)] == ["succeeded", "abandoned"]


@pytest.mark.parametrize(
    ("finished", "changers"),
    [
        # broken image: migrations ran but changed nothing -> no restore needed for it
        ({"result": "failed", "migrated": True, "schema_changed": False}, []),
        # failing migration whose run restored the database itself -> undone already
        ({"result": "failed", "migrated": True, "schema_changed": True, "restored": True}, []),
        # a real schema change that stayed
        ({"result": "succeeded", "migrated": True, "schema_changed": True}, ["r2"]),
        # an old record without schema_changed: any migration counts
        ({"result": "succeeded", "migrated": True}, ["r2"]),
    ],
)
def test_schema_changes_since_the_target(finished: dict[str, Any], changers: list[str]) -> None:
    history = ledger.fold(_events(("r1", "v1", {"result": "succeeded"}), ("r2", "v2", finished)))
    assert [r.release for r in ledger.schema_changes_since(history, history[0])] == changers


def test_torn_lines_and_foreign_objects_are_ignored() -> None:
    class Raw:
        def read_file(self, path: str) -> bytes:
            return (b'{"event":"started","release":"r1","image":"v1"}\n'
                    b'not json\n{"no":"release"}\n{"event":"finished","release":"r1",'
                    b'"result":"succeeded"}\n{"event":"sta')

    from tests.factories import make_host

    events = ledger.read_events(Raw(), make_host(), "acme")  # type: ignore[arg-type]
    assert [r.status for r in ledger.fold(events)] == ["succeeded"]
