"""PerHost: a value built once per host for a fleet run, shared by that host's workers."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from omni.errors import HostUnreachable, StepFailed
from omni.fleet.per_host import PerHost


class Session:
    def __init__(self, name: str) -> None:
        self.name = name


def test_built_once_per_host_however_many_workers_ask_at_once() -> None:
    builds: list[str] = []
    gate = threading.Barrier(8)

    def build(session: Any) -> str:
        builds.append(session.name)
        return f"snapshot of {session.name}"

    memo: PerHost[str] = PerHost(build)
    sessions = {"dev": Session("dev"), "netcup": Session("netcup")}

    def ask(i: int) -> str:
        gate.wait()
        return memo.get(sessions["dev" if i % 2 else "netcup"])  # type: ignore[arg-type]

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, range(8)))
    assert sorted(builds) == ["dev", "netcup"]
    assert answers.count("snapshot of dev") == 4
    assert answers.count("snapshot of netcup") == 4


@pytest.mark.parametrize("error", [StepFailed("docker inspect failed"),
                                   HostUnreachable("host dev: gone", host="dev")])
def test_what_building_raised_is_raised_to_every_asker_without_building_again(
    error: Exception,
) -> None:
    calls = 0

    def build(session: Any) -> str:
        nonlocal calls
        calls += 1
        raise error

    memo: PerHost[str] = PerHost(build)
    for _ in range(3):
        with pytest.raises(type(error)):
            memo.get(Session("dev"))  # type: ignore[arg-type]
    assert calls == 1
