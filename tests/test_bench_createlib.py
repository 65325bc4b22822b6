"""The create-breakdown benchmark's pure logic (bench/createlib.py): no lab needed, and no
assertion on any measured time."""

from __future__ import annotations

import json

import pytest

from bench.createlib import (
    Breakdown,
    Irreducible,
    attribute,
    between,
    breakdown_table,
    frame_label,
    main_thread_stacks,
    marks,
    parse_timeline,
    progress_steps,
    psql_ms,
    stats_cell,
    step_counterparts,
    target_line,
    top_frames,
)


def work(**changes: float) -> Irreducible:
    values = dict(createdb=0.2, handover=0.0, migrate=15.0, small_container=0.2, app_run=0.2,
                  app_healthy=8.0, oneoff=5.0, acme=0.1, nginx=0.2)
    values.update(changes)
    return Irreducible(**values)


def test_progress_steps_reads_ok_lines_only() -> None:
    stderr = ("-> postgres.database: build template database\n"
              "   ok postgres.database (17.6s)\n"
              "   FAIL nginx.vhost (3.0s)\n"
              "   ok health.gate (0.0s)\n")
    assert progress_steps(stderr) == {"postgres.database": 17.6, "health.gate": 0.0}


def test_psql_timing_in_milliseconds() -> None:
    out = "Timing is on.\nCREATE DATABASE\nTime: 12.345 ms\nTime: 1234.5 ms (00:01.235)\n"
    assert psql_ms(out) == [12.345, 1234.5]


def test_marks_and_between() -> None:
    stamps = marks("noise\nmark start 100.250000\nmark end 101,750000\n")
    assert stamps == {"start": 100.25, "end": 101.75}
    assert between(stamps, "start", "end") == pytest.approx(1.5)
    with pytest.raises(KeyError, match="ready"):
        between(stamps, "start", "ready")


def _events(*items: tuple[float, str, dict[str, object]]) -> str:
    return "\n".join(json.dumps({"t": t, "event": e, **extra}) for t, e, extra in items)


def test_timeline_steps_phases_and_remote_commands() -> None:
    text = _events(
        (100.1, "main_start", {}), (100.4, "cli_imported", {}), (100.6, "imported", {}),
        (100.7, "session_start", {}), (100.7, "session_end", {}),
        (101.2, "exec", {"program": "mkdir", "seconds": 0.2}),
        (101.3, "process", {"program": "sh -c ... omni-lock"}),
        (101.5, "plan_start", {}), (102.5, "plan_end", {}), (102.5, "apply_start", {}),
        (102.5, "step_start", {"step": "nginx.vhost"}),
        (104.5, "step_end", {"step": "nginx.vhost"}),
        (104.6, "exec", {"program": "mkdir", "seconds": 0.3}),
        (105.0, "apply_end", {}), (105.1, "verify_start", {}), (105.3, "verify_end", {}),
        (105.3, "health_start", {}), (105.3, "step_start", {"step": "health.gate"}),
        (106.3, "step_end", {"step": "health.gate"}), (106.3, "health_end", {}),
    ) + "\nnot json\n"
    timeline = parse_timeline(text, spawned=100.0, ended=107.0)
    assert timeline.wall == pytest.approx(7.0)
    assert timeline.steps() == pytest.approx({"nginx.vhost": 2.0, "health.gate": 1.0})
    phases = timeline.phases()
    assert sum(phases.values()) == pytest.approx(7.0)
    assert phases["python start-up"] == pytest.approx(0.1)
    assert phases["observe + plan"] == pytest.approx(1.0)
    # apply_end -> verify_start (result building) is counted with the apply
    assert phases["apply (steps and between)"] == pytest.approx(2.6)
    assert phases["verify (re-observe)"] == pytest.approx(0.2)
    assert phases["audit, output, close, exit"] == pytest.approx(0.7)
    remote = timeline.remote_commands()
    assert remote["runs"] == 2
    assert remote["run_seconds"] == pytest.approx(0.5)
    assert remote["by_program"] == {"mkdir": 2}
    assert remote["streams_by_program"] == {"sh -c ... omni-lock": 1}


def test_timeline_without_events_is_all_exit() -> None:
    timeline = parse_timeline("", spawned=10.0, ended=12.0)
    assert timeline.steps() == {}
    assert timeline.phases() == {"audit, output, close, exit": pytest.approx(2.0)}


def test_sums_and_critical_path() -> None:
    w = work()
    assert w.named_five() == pytest.approx(0.2 + 15.0 + 8.0 + 0.1 + 0.2)
    assert w.serial_sum() == pytest.approx(w.named_five() + 3 * 0.2 + 5.0)
    # the boot (8 s) hides ACME + nginx (0.3 s)
    assert w.critical_path() == pytest.approx(0.2 + 15.0 + 3 * 0.2 + 8.0 + 5.0)
    slow_acme = work(acme=9.0, nginx=1.0)
    assert slow_acme.critical_path() == pytest.approx(0.2 + 15.0 + 3 * 0.2 + 10.0 + 5.0)


def test_breakdown_overheads() -> None:
    row = Breakdown(wall=32.0, steps={"medusa.migrations": 16.0, "nginx.vhost": 2.0},
                    work=work())
    assert row.step_sum == pytest.approx(18.0)
    assert row.non_step == pytest.approx(14.0)
    assert row.overhead_serial == pytest.approx(32.0 - work().serial_sum())
    assert row.overhead_critical == pytest.approx(32.0 - work().critical_path())
    assert row.overhead_critical > row.overhead_serial


def test_step_counterparts() -> None:
    pairs = step_counterparts(work(handover=0.05, migrate=0.0))
    assert pairs["postgres.database"] == pytest.approx(0.25)
    assert pairs["medusa.migrations"] is None  # template path: nothing runs
    assert pairs["network.gateway"] == pairs["redis.container"] == 0.2
    assert pairs["tenant.secrets"] is None
    assert pairs["medusa.publishable_key"] == 5.0


def test_breakdown_table_rows() -> None:
    rows = [Breakdown(30.0, {"nginx.vhost": 2.0, "tenant.secrets": 0.3}, work()),
            Breakdown(34.0, {"nginx.vhost": 3.0, "tenant.secrets": 0.2}, work(nginx=0.4))]
    table = breakdown_table(rows, ["tenant.secrets", "medusa.migrations", "nginx.vhost"])
    lines = table.splitlines()
    assert lines[0].startswith("| omni step |")
    vhost = next(line for line in lines if line.startswith("| `nginx.vhost`"))
    assert "2.00 / 2.50 / 3.00" in vhost
    assert "0.20 / 0.30 / 0.40" in vhost  # the server side
    assert "1.80 / 2.20 / 2.60" in vhost  # omni - server
    assert not any(line.startswith("| `medusa.migrations`") for line in lines)
    secrets_row = next(line for line in lines if line.startswith("| `tenant.secrets`"))
    assert secrets_row.rstrip().endswith("| - | - |")
    assert any("whole CLI wall" in line and "30.00 / 32.00 / 34.00" in line for line in lines)


def test_stats_cell_and_target_line() -> None:
    assert stats_cell([None, None]) == "-"
    assert stats_cell([3.0, None, 1.0, 2.0]) == "1.00 / 2.00 / 3.00"
    assert target_line("create", 12.0, 20).endswith(": met")
    assert target_line("create", 21.0, 20).endswith("**missed**")


PROFILE = """\
thread (10): MainThread;_run_module_as_main (<frozen runpy>:198);main (omni/cli/app.py:201);\
apply_plan (omni/engine/engine.py:101);apply (omni/resources/vhost.py:127);\
run (omni/transport/ssh.py:291);_communicate (omni/transport/ssh.py:524);\
wait (threading.py:331) 30
thread (10): MainThread;_run_module_as_main (<frozen runpy>:198);main (omni/cli/app.py:201);\
plan_tenant (omni/usecases/tenant_create.py:206);observe (omni/resources/vhost.py:90);\
read (ssl.py:1167) 10
thread (10): MainThread;_run_module_as_main (<frozen runpy>:198);main (omni/cli/app.py:201) 5
thread (11): Thread-3 (_pump);_pump (omni/hosts/postgres.py:40);recv (socket.py:1) 500
garbage line
"""


def test_profile_main_thread_and_attribution() -> None:
    stacks = main_thread_stacks(PROFILE)
    assert sum(n for _, n in stacks) == 45  # the pump thread is left out
    rules = [("vhost step", (r"^apply_plan \(", r"omni/resources/vhost\.py")),
             ("observe + plan", (r"^plan_tenant \(",))]
    assert attribute(stacks, rules) == {"vhost step": 30, "observe + plan": 10, "other": 5}
    assert top_frames(stacks, 2) == [("threading.py:331 wait", 30), ("ssl.py:1167 read", 10)]
    logic = top_frames(stacks, 5, r"(^|[ (/])omni/(?!transport/|hosts/)")
    assert logic[0] == ("omni/resources/vhost.py:127 apply", 30)


def test_profile_main_thread_without_names() -> None:
    text = ("thread (1);loop (worker.py:3) 90\n"
            "thread (2);<module> (omni/cli/__main__.py:5);main (omni/cli/app.py:1) 7\n")
    assert main_thread_stacks(text) == [(["<module> (omni/cli/__main__.py:5)",
                                          "main (omni/cli/app.py:1)"], 7)]


def test_frame_label() -> None:
    assert frame_label("wait_live (omni/nginx.py:102)") == "omni/nginx.py:102 wait_live"
    assert frame_label("get (/v/lib/python3.11/site-packages/requests/api.py:73)") == \
        "requests/api.py:73 get"
    assert frame_label("x (/work/wt/omni/probe.py:3)") == "omni/probe.py:3 x"
    assert frame_label("read (/usr/lib/python3.11/ssl.py:1167)") == "ssl.py:1167 read"
    assert frame_label("plain") == "plain"
