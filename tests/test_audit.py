"""The audit log's format, masking, size bound, merging and the use-case API (no lab)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from omni import audit
from omni.errors import CommandFailed, HostUnreachable, LockHeld, StepFailed
from omni.fleet.runner import TenantResult
from omni.output.result import Result
from omni.redact import MASK, mask_argv

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["tenant", "create", "acme", "--host", "dev"],
         ["tenant", "create", "acme", "--host", "dev"]),
        (["x", "--password", "hunter2", "--host", "dev"],
         ["x", "--password", MASK, "--host", "dev"]),
        (["x", "--password=hunter2"], ["x", f"--password={MASK}"]),
        (["x", "--api-token", "t0k"], ["x", "--api-token", MASK]),
        (["x", "--DB-Secret=s", "--client-secret", "s2"], ["x", f"--DB-Secret={MASK}",
                                                           "--client-secret", MASK]),
        (["x", "--token", "--json"], ["x", "--token", "--json"]),  # a flag, not a value
        (["x", "--token"], ["x", "--token"]),
        (["x", "--apikey", "k", "--private-key", "pem"], ["x", "--apikey", MASK,
                                                           "--private-key", MASK]),
        (["x", "password", "token"], ["x", "password", "token"]),  # positionals stay
    ],
)
def test_secret_option_values_are_masked(argv: list[str], expected: list[str]) -> None:
    assert mask_argv(argv) == expected


def test_entry_has_the_documented_fields_in_order_and_masks_argv() -> None:
    entry = audit.make_entry(
        when=T0, who="alice@box", command="tenant create",
        argv=["tenant", "create", "acme", "--token", "sekrit"], tenants=["acme"],
        result="success", exit_code=0, seconds=12.3456, plan_fingerprint="abc123",
    )
    assert list(entry) == list(audit.FIELDS)
    assert entry["when"] == "2026-03-01T12:00:00.000Z"
    assert entry["argv"] == ["tenant", "create", "acme", "--token", MASK]
    assert entry["seconds"] == 12.35
    line = audit.encode_line(entry)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert b"sekrit" not in line
    assert json.loads(line) == entry


@pytest.mark.parametrize(
    ("argv_len", "tenants_len"),
    [(1, 2000), (3000, 1), (400, 400), (1, 0), (5000, 5000)],
)
def test_a_line_never_exceeds_4_kib_and_says_when_it_was_shortened(
    argv_len: int, tenants_len: int
) -> None:
    entry = audit.make_entry(
        when=T0, who="w" * 1000, command="migrate-all", argv=["a" * 50] * argv_len,
        tenants=[f"tenant-{i:05d}" for i in range(tenants_len)], result="error",
        exit_code=3, seconds=1,
    )
    line = audit.encode_line(entry)
    assert len(line) <= audit.MAX_LINE_BYTES
    decoded = json.loads(line)
    assert decoded["command"] == "migrate-all" and decoded["exit_code"] == 3
    assert decoded.get("truncated", False) == (len(json.dumps(entry)) > 4000)


def test_parse_log_skips_blank_and_broken_lines_and_counts_them() -> None:
    good = audit.encode_line(audit.make_entry(
        when=T0, who="a", command="restart", argv=[], tenants=["x"], result="success",
        exit_code=0, seconds=1))
    raw = good + b"\n{not json\n" + b'{"no": "when"}\n' + b"[1,2]\n" + good
    entries, bad = audit.parse_log(raw)
    assert len(entries) == 2 and bad == 3
    assert audit.parse_log(b"") == ([], 0)


def test_merge_orders_by_time_newest_last_across_hosts_and_tags_the_host() -> None:
    def e(minutes: int, tag: str) -> dict[str, Any]:
        return {"when": audit.iso(T0 + timedelta(minutes=minutes)), "tag": tag,
                "tenants": [tag]}

    merged = audit.merge({
        "netcup": [e(1, "n1"), e(5, "n5")],
        "dev": [e(3, "d3"), e(0, "d0"), e(5, "d5")],  # a clock step back on dev: still sorted
    })
    assert [m["tag"] for m in merged] == ["d0", "n1", "d3", "d5", "n5"]
    assert {m["host"] for m in merged if m["tag"].startswith("d")} == {"dev"}
    assert [m["tag"] for m in audit.for_tenant(merged, "d3")] == ["d3"]


def test_merge_accepts_offsets_and_puts_unparseable_times_first() -> None:
    merged = audit.merge({"dev": [
        {"when": "2026-03-01T13:00:00+01:00", "tag": "b"},  # == 12:00Z
        {"when": "2026-03-01T11:59:00Z", "tag": "a"},
        {"when": "garbage", "tag": "z"},
    ]})
    assert [m["tag"] for m in merged] == ["z", "a", "b"]


# -- the use-case API -------------------------------------------------------------------


@dataclass
class FakeTransport:
    fail: Exception | None = None
    calls: list[tuple[list[str], bytes | None]] = field(default_factory=list)

    def run(self, argv: Sequence[str], *, stdin: bytes | None = None, **_: Any) -> None:
        if self.fail is not None:
            raise self.fail
        self.calls.append((list(argv), stdin))


def fake_session(name: str = "dev", fail: Exception | None = None) -> Any:
    return SimpleNamespace(
        name=name, transport=FakeTransport(fail), host=SimpleNamespace(state_dir="/var/lib/omni")
    )


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=2)
        return self.now


def written(session: Any) -> list[dict[str, Any]]:
    entries = []
    for argv, stdin in session.transport.calls:
        assert argv[:2] == ["sh", "-c"]
        assert argv[-2] == "/var/lib/omni/audit.jsonl"
        assert stdin is not None and int(argv[-1]) == len(stdin)  # one write, whole line
        assert "umask 077" in argv[2] and "oflag=append" in argv[2]
        entries.append(json.loads(stdin))
    return entries


def test_audited_records_the_result_and_fingerprint_passed_to_done() -> None:
    context = audit.AuditContext(("tenant", "create", "acme"), "alice@box", clock=Clock())
    session = fake_session()
    with audit.audited(context, session, command="tenant create", tenants=["acme"]) as entry:
        entry.plan_fingerprint = "fp1"
        result = entry.done(Result.success("tenant create"))
    assert result.ok
    (line,) = written(session)
    assert line["who"] == "alice@box" and line["argv"] == ["tenant", "create", "acme"]
    assert (line["result"], line["exit_code"], line["plan_fingerprint"]) == ("success", 0, "fp1")
    assert line["when"] == "2026-03-01T12:00:02.000Z" and line["seconds"] == 2.0


@pytest.mark.parametrize(
    ("error", "code"),
    [(StepFailed("boom"), 3), (LockHeld("held"), 4), (HostUnreachable("gone"), 5),
     (RuntimeError("bug"), 70), (KeyboardInterrupt(), 130)],
)
def test_audited_records_an_exception_with_its_exit_code_and_reraises(
    error: BaseException, code: int
) -> None:
    context = audit.AuditContext(("tenant", "destroy", "acme", "--yes"), "bob", clock=Clock())
    session = fake_session()
    with pytest.raises(type(error)), audit.audited(
        context, session, command="tenant destroy", tenants=["acme"]
    ):
        raise error
    (line,) = written(session)
    assert (line["result"], line["exit_code"]) == ("error", code)


def test_audited_records_a_failed_result_as_an_error() -> None:
    context = audit.AuditContext((), "bob", clock=Clock())
    session = fake_session()
    with audit.audited(context, session, command="tenant create", tenants=["a"]) as entry:
        entry.done(Result.failure("tenant create", [StepFailed("x")]))
    assert [(e["result"], e["exit_code"]) for e in written(session)] == [("error", 3)]


@pytest.mark.parametrize("context", [None, audit.AuditContext((), "x")])
def test_no_entry_without_a_context_or_for_a_dry_run(
    context: audit.AuditContext | None,
) -> None:
    session = fake_session()
    with audit.audited(context, session, command="tenant create", tenants=["a"],
                       enabled=False) as entry:
        entry.done(Result.success("tenant create"))
    assert session.transport.calls == []


@pytest.mark.parametrize(
    "failure", [HostUnreachable("host dev: gone"), CommandFailed("dd: disk full")]
)
def test_a_host_that_refuses_the_entry_is_a_warning_not_a_failure(
    failure: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    context = audit.AuditContext((), "x")
    session = fake_session(fail=failure)
    assert context.record(session, command="restart", tenants=["a"], result=None,
                          started=T0) is None
    assert "audit: host dev: entry not written" in caplog.text


def test_record_fleet_writes_one_entry_per_host_touched_with_its_tenants() -> None:
    context = audit.AuditContext(("restart", "--all"), "ci", clock=Clock())
    sessions = {"dev": fake_session("dev"), "netcup": fake_session("netcup"),
                "spare": fake_session("spare")}
    results = [
        TenantResult("a", "dev", "ok"),
        TenantResult("b", "netcup", "failed"),
        TenantResult("c", "dev", "ok"),
        TenantResult("d", "netcup", "ok"),
        TenantResult("e", "spare", "skipped"),  # nothing changed: no entry
        TenantResult("f", "spare", "locked"),
        TenantResult("g", "dev", "not_run"),
    ]
    overall = Result.failure("restart", [StepFailed("1 tenant(s) failed: b@netcup")])
    pool = SimpleNamespace(get=lambda name: sessions[name])
    entries = context.record_fleet(pool, command="restart", results=results, result=overall,
                                   started=T0)
    assert len(entries) == 2
    (dev,) = written(sessions["dev"])
    (netcup,) = written(sessions["netcup"])
    assert written(sessions["spare"]) == []
    assert (dev["tenants"], dev["result"], dev["exit_code"]) == (["a", "c"], "success", 0)
    assert (netcup["tenants"], netcup["result"], netcup["exit_code"]) == (
        ["b", "d"], "error", 3)
