"""The fleet benchmark's pure logic (bench/fleetlib.py): no lab needed."""

from __future__ import annotations

import pytest

from bench.fleetlib import (
    GiB,
    MiB,
    accepted_connections,
    ansible_recap,
    count_connections,
    ideal_seconds,
    key_fingerprint,
    known_hosts_lines,
    markdown_table,
    memory_fits,
    per_tenant_memory,
    replace_section,
    stats,
)

CLIENT_FP = "SHA256:lPCeUyoET7rBSJ0y8BuHfstsAD5eKfHcw1Q7vl8HdA4"
OTHER_FP = "SHA256:hX7eZGhNZh+XK6T2GjsxwP8wfcYi8Rezeuj5FcalT9M"
SSHD_LOG = f"""\
Connection from 127.0.0.1 port 42102 on 127.0.0.2 port 22 rdomain ""
Accepted key ED25519 {CLIENT_FP} found at /lab/ssh/authorized_keys:1
Accepted publickey for root from 127.0.0.1 port 42102 ssh2: ED25519 {CLIENT_FP}
Accepted publickey for root from 127.0.0.3 port 50000 ssh2: ED25519 {OTHER_FP}
kex_exchange_identification: read: Connection reset by peer
Dec  2 10:56:01 vm sshd[123]: Accepted publickey for root from 127.0.0.1 port 42104 ssh2: \
ED25519 {CLIENT_FP}
Failed publickey for root from 127.0.0.1 port 42110 ssh2: ED25519 {CLIENT_FP}
"""


def test_stats_min_median_max() -> None:
    s = stats([3.0, 1.0, 2.0, 10.0])
    assert (s.runs, s.min, s.median, s.max) == (4, 1.0, 2.5, 10.0)
    with pytest.raises(ValueError, match="no samples"):
        stats([])


@pytest.mark.parametrize(
    ("per_tenant", "parallel", "concurrency", "want"),
    [
        # serial: the sum
        ([("dev", 10.0), ("dev", 10.0), ("netcup", 10.0), ("netcup", 10.0)], 1,
         {"dev": 4, "netcup": 4}, 40.0),
        # 4 tenants, 2 per host, parallel 4: every tenant at once
        ([("dev", 10.0), ("dev", 10.0), ("netcup", 10.0), ("netcup", 10.0)], 4,
         {"dev": 4, "netcup": 4}, 10.0),
        # one host with concurrency 1 bounds it: its own sum
        ([("dev", 10.0), ("dev", 10.0), ("netcup", 5.0)], 4, {"dev": 1, "netcup": 4}, 20.0),
        # the longest tenant bounds it
        ([("dev", 30.0), ("dev", 1.0), ("netcup", 1.0)], 2, {"dev": 4, "netcup": 4}, 30.0),
        # total / parallel when hosts are balanced
        ([("dev", 6.0)] * 3 + [("netcup", 6.0)] * 3, 2, {"dev": 4, "netcup": 4}, 18.0),
        ([], 4, {}, 0.0),
    ],
)
def test_ideal_seconds(
    per_tenant: list[tuple[str, float]], parallel: int, concurrency: dict[str, int],
    want: float,
) -> None:
    assert ideal_seconds(per_tenant, parallel, concurrency) == pytest.approx(want)


def test_ideal_seconds_refuses_parallel_zero() -> None:
    with pytest.raises(ValueError, match="parallel"):
        ideal_seconds([("dev", 1.0)], 0, {})


def test_sshd_log_accepted_lines_only() -> None:
    found = accepted_connections(SSHD_LOG)
    assert [(a.address, a.port, a.fingerprint) for a in found] == [
        ("127.0.0.1", 42102, CLIENT_FP),
        ("127.0.0.3", 50000, OTHER_FP),
        ("127.0.0.1", 42104, CLIENT_FP),
    ]
    assert count_connections(SSHD_LOG) == 3
    assert count_connections(SSHD_LOG, CLIENT_FP) == 2
    assert count_connections(SSHD_LOG, OTHER_FP) == 1
    assert count_connections("", CLIENT_FP) == 0
    # only this process's connections, by the source ports it connected from
    assert count_connections(SSHD_LOG, CLIENT_FP, {42104, 50000}) == 1
    assert count_connections(SSHD_LOG, None, {42104, 50000}) == 2
    assert count_connections(SSHD_LOG, CLIENT_FP, set()) == 0


def test_key_fingerprint_matches_ssh_keygen() -> None:
    # `ssh-keygen -lf` of this (public, throwaway) key printed CLIENT_FP.
    line = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKYcxA7/K/GHDbMJVZR8yqHuFZVEIGVVbxGk/z3yoB+l "
            "omni-lab-client")
    assert key_fingerprint(line) == CLIENT_FP
    assert key_fingerprint(line.replace("IKYc", "IKYd")) != CLIENT_FP
    with pytest.raises(ValueError, match="public key"):
        key_fingerprint("nonsense")


def test_known_hosts_lines_bracket_non_default_ports_and_drop_comments() -> None:
    assert known_hosts_lines([
        ("127.0.0.2", 22, ["ssh-ed25519 AAAA1 root@dev.lab"]),
        ("127.0.0.3", 2222, ["ssh-ed25519 AAAA2 c", "ecdsa-sha2-nistp256 BBBB3"]),
    ]) == [
        "127.0.0.2 ssh-ed25519 AAAA1",
        "[127.0.0.3]:2222 ssh-ed25519 AAAA2",
        "[127.0.0.3]:2222 ecdsa-sha2-nistp256 BBBB3",
    ]


def test_memory_fits_keeps_the_reserve() -> None:
    assert memory_fits(20 * GiB, 40 * MiB, 290, 4 * GiB) == (True, 290 * 40 * MiB)
    assert memory_fits(10 * GiB, 40 * MiB, 290, 4 * GiB)[0] is False
    assert memory_fits(5 * GiB, 40 * MiB, 0, 4 * GiB) == (True, 0)


def test_per_tenant_memory_has_a_floor() -> None:
    assert per_tenant_memory(10 * GiB, 10 * GiB - 400 * MiB, 10, 16 * MiB) == 40 * MiB
    assert per_tenant_memory(10 * GiB, 11 * GiB, 10, 16 * MiB) == 16 * MiB
    assert per_tenant_memory(10 * GiB, 9 * GiB, 0, 16 * MiB) == 16 * MiB


def test_ansible_recap_totals() -> None:
    out = """
PLAY RECAP *********************************************************************
shop-a                     : ok=9    changed=0    unreachable=0    failed=0    skipped=0
shop-b                     : ok=4    changed=0    unreachable=0    failed=1    skipped=0
shop-c                     : ok=0    changed=0    unreachable=1    failed=0    skipped=0
"""
    assert ansible_recap(out) == {"hosts": 3, "ok": 13, "changed": 0, "unreachable": 1,
                                  "failed": 1, "hosts_failed": 2}
    assert ansible_recap("no recap")["hosts"] == 0


def test_replace_section_replaces_or_appends() -> None:
    text = "# R\n\n<!-- a:start -->\nold\n<!-- a:end -->\ntail\n"
    assert replace_section(text, "a", "new") == (
        "# R\n\n<!-- a:start -->\nnew\n<!-- a:end -->\ntail\n"
    )
    assert replace_section("# R\n", "b", "x") == "# R\n\n<!-- b:start -->\nx\n<!-- b:end -->\n"
    with pytest.raises(ValueError, match="has no"):
        replace_section("<!-- a:start -->\n", "a", "x")


def test_markdown_table() -> None:
    assert markdown_table(["n", "s"], [[10, 1.234], ["a|b", None]], [True, True]) == (
        "| n | s |\n|---:|---:|\n| 10 | 1.23 |\n| a\\|b | - |"
    )


def test_report_renders_every_section_from_results() -> None:
    from bench.fleet_report import render_readme_summary, render_results

    stat = {"runs": 2, "min": 1.0, "median": 1.5, "max": 2.0}
    conns = {"dev": 1, "netcup": 1}
    results = {
        "label": "unit", "args": {"sizes": [10], "real": 2},
        "machine": {"date": "2026-12-02T00:00:00Z", "cores": 2, "cpu": "cpu",
                    "memory_gib": 24, "memory_available_gib_at_start": 20, "kernel": "k",
                    "python": "3.11", "commit": "abc", "load_average_at_start": [1, 2, 3]},
        "startup": {"omni --help": stat, "ansible --version": stat},
        "health": [{"n": 10, "real": 2, "standin": 8, "omni_wall": stat, "ansible_wall": stat,
                    "speedup": 1.0, "omni_max_rss_mib": 88.0, "ansible_forks": 8,
                    "omni": [{"summary": {"ok": 10}, "ssh_connections": conns,
                              "check_seconds_mean": {"app": 0.3}, "tenant_seconds_mean": 0.4}],
                    "ansible": [{"ssh_connections": {"dev": 4, "netcup": 5},
                                 "recap": {"hosts": 10, "hosts_failed": 1}}]}],
        "rolls": {"deploy": [{"parallel": 2, "wall": 10.0, "ideal": 9.0, "ratio": 1.11,
                              "sum_tenant_seconds": 18.0, "tenants": 2, "statuses": {"ok": 2},
                              "ssh_connections": conns, "ideal_from_serial": 5.0,
                              "ratio_from_serial": 2.0, "image": "img:v2"}]},
        "backup": {"tenants": 2, "omni_wall": stat, "by_hand_wall": stat,
                   "omni": [{"bytes": 2048, "ssh_connections": conns, "exit": 3,
                             "statuses": {"ok": 1, "failed": 1}, "errors": ["boom"]}],
                   "by_hand": [{"errors": []}]},
        "notes": ["a note"],
    }
    text = render_results(results)
    for expected in ("| 10 | 2 + 8 |", "9/10 tenants pass", "dev 4, netcup 5",
                     "| `deploy` -> img:v2 | 2 | 2 | 10.00 |", "2.0x", "exit 3 (1 failed, 1 ok)",
                     "failure: `omni backup --all`: boom", "- a note", "load average at start",
                     "| 10 | 0.40 | 0.30 |"):
        assert expected in text, expected
    summary = render_readme_summary(results)
    assert "health-check, N=10 (8 stand-ins) | 1.50 | 1.50 | dev 1, netcup 1" in summary
    assert "1.11x of ideal; 2.0x of the serial-times ideal" in summary
