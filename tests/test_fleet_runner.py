"""The fleet runner's scheduling, stop/keep-going and failure mapping (pure logic).

The sessions here are stand-ins that only hand out locks: these tests are about the
runner's loop, not about any server (the lab tests of each fleet command cover those).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from omni.errors import CheckFailed, HostUnreachable, InvalidInput, LockHeld, StepFailed
from omni.fleet.report import fleet_result
from omni.fleet.runner import FleetOptions, Outcome, run_fleet
from omni.inventory.models import Host, Tenant
from tests.factories import make_host, make_tenant


class FakeSession:
    def __init__(self, name: str, held: set[str]) -> None:
        self.name = name
        self.held = held
        self.locked: list[str] = []

    @contextlib.contextmanager
    def lock(self, name: str, wait_seconds: float = 0, purpose: str = "") -> Iterator[None]:
        if name in self.held:
            raise LockHeld(f"lock {name!r} is held", lock=name)
        self.locked.append(name)
        yield


class FakeSessions:
    def __init__(self, held: set[str] | None = None) -> None:
        self.sessions: dict[str, FakeSession] = {}
        self.held = held or set()

    def get(self, name: str) -> Any:
        return self.sessions.setdefault(name, FakeSession(name, self.held))


def _fleet(per_host: dict[str, int], concurrency: dict[str, int]) -> tuple[
    list[Tenant], dict[str, Host]
]:
    hosts = {
        name: make_host(name=name, concurrency=concurrency[name]) for name in per_host
    }
    tenants = [
        make_tenant(slug=f"{name}-t{i}", host=name, domains=[f"t{i}.{name}.example"])
        for name, count in per_host.items()
        for i in range(count)
    ]
    return tenants, hosts


class Overlap:
    """Records the most tenants seen working at once, overall and per host."""

    def __init__(self) -> None:
        self.guard = threading.Lock()
        self.now: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.total_peak = 0

    def work(self, session: Any, tenant: Tenant) -> Outcome:
        with self.guard:
            self.now[tenant.host] = self.now.get(tenant.host, 0) + 1
            self.peak[tenant.host] = max(self.peak.get(tenant.host, 0), self.now[tenant.host])
            self.total_peak = max(self.total_peak, sum(self.now.values()))
        time.sleep(0.02)  # long enough for workers to overlap if the runner lets them
        with self.guard:
            self.now[tenant.host] -= 1
        return Outcome("ok", "done")


@pytest.mark.parametrize(
    ("concurrency", "parallel", "host_peak", "total_peak"),
    [
        ({"dev": 2, "netcup": 3}, None, {"dev": 2, "netcup": 3}, 5),
        ({"dev": 2, "netcup": 3}, 1, {"dev": 1, "netcup": 1}, 1),
        ({"dev": 4, "netcup": 4}, 3, {"dev": 3, "netcup": 3}, 3),
        ({"dev": 1, "netcup": 1}, 8, {"dev": 1, "netcup": 1}, 2),
    ],
)
def test_never_more_than_a_hosts_concurrency_nor_parallel_overall(
    concurrency: dict[str, int], parallel: int | None, host_peak: dict[str, int],
    total_peak: int,
) -> None:
    tenants, hosts = _fleet({"dev": 8, "netcup": 8}, concurrency)
    overlap = Overlap()
    results = run_fleet(tenants, hosts, overlap.work, FakeSessions(),
                        FleetOptions(parallel=parallel))
    assert [r.slug for r in results] == [t.slug for t in tenants]
    assert all(r.status == "ok" for r in results)
    for host, peak in overlap.peak.items():
        assert peak <= host_peak[host]
    assert overlap.total_peak <= total_peak


def test_a_read_only_run_uses_each_hosts_check_concurrency() -> None:
    tenants, _ = _fleet({"dev": 12, "netcup": 12}, {"dev": 1, "netcup": 1})
    hosts = {
        "dev": make_host(name="dev", concurrency=1, check_concurrency=3),
        "netcup": make_host(name="netcup", concurrency=1, check_concurrency=2),
    }
    looking, changing = Overlap(), Overlap()
    run_fleet(tenants, hosts, looking.work, FakeSessions(), FleetOptions(read_only=True))
    run_fleet(tenants, hosts, changing.work, FakeSessions(), FleetOptions())
    assert looking.peak["dev"] <= 3 and looking.peak["netcup"] <= 2
    assert looking.total_peak > 2, "read-only work ran beyond the hosts' concurrency"
    assert changing.peak == {"dev": 1, "netcup": 1}


def test_stop_at_first_failure_leaves_the_rest_not_run() -> None:
    tenants, hosts = _fleet({"dev": 5}, {"dev": 1})

    def work(session: Any, tenant: Tenant) -> Outcome:
        if tenant.slug == "dev-t1":
            raise StepFailed("health gate failed")
        return Outcome("ok")

    results = run_fleet(tenants, hosts, work, FakeSessions(), FleetOptions(keep_going=False))
    assert [r.status for r in results] == ["ok", "failed", "not_run", "not_run", "not_run"]
    assert results[1].error is not None and results[1].error["code"] == "step_failed"


def test_keep_going_runs_every_tenant() -> None:
    tenants, hosts = _fleet({"dev": 4}, {"dev": 2})

    def work(session: Any, tenant: Tenant) -> Outcome:
        if tenant.slug == "dev-t0":
            raise StepFailed("boom")
        return Outcome("ok")

    results = run_fleet(tenants, hosts, work, FakeSessions(), FleetOptions(keep_going=True))
    assert [r.status for r in results] == ["failed", "ok", "ok", "ok"]


def test_an_unreachable_host_marks_its_tenants_and_spares_the_others() -> None:
    tenants, hosts = _fleet({"dev": 3, "netcup": 3}, {"dev": 1, "netcup": 1})
    calls: list[str] = []

    def work(session: Any, tenant: Tenant) -> Outcome:
        calls.append(tenant.slug)
        if tenant.host == "netcup":
            raise HostUnreachable("host netcup: connection refused")
        return Outcome("ok")

    results = run_fleet(tenants, hosts, work, FakeSessions(), FleetOptions())
    by_host = {r.slug: r.status for r in results}
    assert [by_host[f"dev-t{i}"] for i in range(3)] == ["ok"] * 3
    assert [by_host[f"netcup-t{i}"] for i in range(3)] == ["unreachable"] * 3
    assert sum(1 for c in calls if c.startswith("netcup")) == 1  # not tried again


def test_locks_are_taken_only_when_asked_and_a_held_one_is_a_result() -> None:
    tenants, hosts = _fleet({"dev": 2}, {"dev": 2})
    sessions = FakeSessions(held={"tenant-dev-t1"})
    results = run_fleet(tenants, hosts, lambda s, t: Outcome("ok"), sessions,
                        FleetOptions(lock=True))
    assert [r.status for r in results] == ["ok", "locked"]
    assert sessions.sessions["dev"].locked == ["tenant-dev-t0"]
    plain = FakeSessions()
    run_fleet(tenants, hosts, lambda s, t: Outcome("ok"), plain, FleetOptions(lock=False))
    assert plain.sessions["dev"].locked == []


def test_a_bug_in_the_work_is_a_failed_result_not_a_hang() -> None:
    tenants, hosts = _fleet({"dev": 2}, {"dev": 1})

    def work(session: Any, tenant: Tenant) -> Outcome:
        raise KeyError("oops")

    results = run_fleet(tenants, hosts, work, FakeSessions(), FleetOptions())
    assert [r.status for r in results] == ["failed", "failed"]
    assert results[0].error is not None and results[0].error["code"] == "internal"


@pytest.mark.parametrize("parallel", [0, -1])
def test_parallel_below_one_is_refused(parallel: int) -> None:
    tenants, hosts = _fleet({"dev": 1}, {"dev": 1})
    with pytest.raises(InvalidInput, match="--parallel"):
        run_fleet(tenants, hosts, lambda s, t: Outcome(), FakeSessions(),
                  FleetOptions(parallel=parallel))


@pytest.mark.parametrize(
    ("statuses", "unreachable_first", "exit_code"),
    [
        (["ok", "warning", "skipped"], False, 0),
        (["ok", "failed"], False, 1),
        (["failed", "unreachable"], True, 5),
        (["failed", "unreachable"], False, 1),
        (["locked", "ok"], False, 4),
        (["unreachable"], False, 5),
    ],
)
def test_fleet_result_exit_status(
    statuses: list[str], unreachable_first: bool, exit_code: int
) -> None:
    tenants, hosts = _fleet({"dev": len(statuses)}, {"dev": 1})
    results = run_fleet(
        tenants, hosts,
        lambda s, t: Outcome(statuses[int(t.slug.rsplit("t", 1)[1])]),  # type: ignore[arg-type]
        FakeSessions(), FleetOptions(),
    )
    result = fleet_result("health-check", results, CheckFailed,
                          unreachable_first=unreachable_first)
    assert int(result.exit_code) == exit_code
    assert result.data["summary"] == {s: statuses.count(s) for s in statuses}
    assert len(result.data["tenants"]) == len(statuses)
