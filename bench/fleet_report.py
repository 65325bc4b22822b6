"""Markdown of the fleet benchmark's results (``bench/results.json`` -> ``RESULTS.md`` and
the README summary). Pure: a dict in, text out.

    python bench/fleet_report.py bench/results.json   # re-render RESULTS.md's fleet part
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.fleetlib import markdown_table, replace_section

PLOT = "health-check-vs-n.png"
TARGETS = {
    "health300": "300 tenants under 2 s, at least 20x faster than Ansible",
    "ssh": "exactly one SSH connection per host touched",
    "rolls": "within 1.1x of ideal",
    "help": "`omni --help` under 0.2 s",
}


def _s(stat: Mapping[str, Any] | None, key: str = "median") -> float | None:
    return None if not stat else float(stat[key])


def _conns(runs: Sequence[Mapping[str, Any]]) -> str:
    """Connections per host over the runs: ``dev 1, netcup 1`` (or min-max when they vary)."""
    per_host: dict[str, list[int]] = {}
    for r in runs:
        for host, count in (r.get("ssh_connections") or {}).items():
            per_host.setdefault(host, []).append(int(count))
    if not per_host:
        return "-"
    parts = []
    for host, counts in sorted(per_host.items()):
        lo, hi = min(counts), max(counts)
        parts.append(f"{host} {lo}" if lo == hi else f"{host} {lo}-{hi}")
    return ", ".join(parts)


def render_results(r: Mapping[str, Any]) -> str:
    m = r["machine"]
    out = [
        "## Fleet benchmarks (`make bench-fleet`, issue 12)",
        "",
        f"**{r['label']}** on {m['date']}: {m['cores']} cores ({m['cpu']}), "
        f"{m['memory_gib']} GiB RAM ({m['memory_available_gib_at_start']} GiB available at "
        f"start), Linux {m['kernel']}, Python {m['python']}, commit `{m['commit']}`"
        f"{_load(m)}; the "
        f"whole run took {r.get('bench_seconds', '?')} s. Against the lab: two hosts (dev, "
        "netcup) on loopback of this one machine, each with its own sshd, Postgres 15, "
        "nginx and Docker engine, plus Pebble as the ACME server. Seconds are wall-clock "
        "time of the whole CLI process; min / median / max over the runs shown.",
        "",
        f"Raw numbers: [`results.json`](results.json). Arguments: `{_args(r)}`.",
        "",
    ]
    out += _health(r)
    out += _connections(r)
    out += _startup(r)
    out += _create(r)
    out += _rolls(r)
    out += _backup(r)
    notes = list(r.get("notes") or [])
    failures = list(r.get("failures") or []) + _errors(r)
    if notes or failures:
        out += ["### Notes from this run", ""]
        out += [f"- {n}" for n in notes]
        out += [f"- failure: {f}" for f in failures]
        out.append("")
    out += _method()
    return "\n".join(out).rstrip() + "\n"


def _load(m: Mapping[str, Any]) -> str:
    """The load average (1, 5, 15 min) at start and end: other work on the machine."""
    parts = [f"{when} {' / '.join(str(x) for x in m[key])}"
             for when, key in (("start", "load_average_at_start"),
                               ("end", "load_average_at_end")) if m.get(key)]
    return f"; load average at {', at '.join(parts)}" if parts else ""


def _args(r: Mapping[str, Any]) -> str:
    a = r.get("args") or {}
    return (f"--sizes {' '.join(map(str, a.get('sizes', [])))} --real {a.get('real')} "
            f"--repeats {a.get('repeats')} --ansible-repeats {a.get('ansible_repeats')} "
            f"--heavy-repeats {a.get('heavy_repeats')}")


def _health(r: Mapping[str, Any]) -> list[str]:
    rows = []
    for h in r.get("health") or []:
        omni, ans = h["omni_wall"], h.get("ansible_wall")
        rows.append([
            h["n"], f"{h['real']} + {h['standin']}",
            f"{omni['min']:.2f} / {omni['median']:.2f} / {omni['max']:.2f} ({omni['runs']})",
            f"{ans['min']:.1f} / {ans['median']:.1f} / {ans['max']:.1f} ({ans['runs']})"
            if ans else "not run",
            f"{h['speedup']}x" if h.get("speedup") else "-",
            _conns(h["omni"]), _conns(h.get("ansible") or []),
            h["omni_max_rss_mib"],
            _statuses(h["omni"]),
            _ansible_ok(h.get("ansible") or []),
        ])
    if not rows:
        return []
    return [
        "### health-check of N tenants: omni against Ansible",
        "",
        f"Target: {TARGETS['health300']}; {TARGETS['ssh']}. Tenants are the real Medusa "
        "tenants plus **stand-in tenants**: `omni-lab/standin:1`, a socat process answering "
        "200 to every request, created by omni's own `tenant create` with `app_kind: plain` "
        "(own Postgres role and database, own Redis container, own app container, vhost and "
        "Pebble certificate; no Medusa migrations or onboarding). Every check omni runs "
        "(app, redis, database, upstream, https, certificate, config) costs the same for a "
        "stand-in as for Medusa, except that the stand-in answers `/health` faster.",
        "",
        markdown_table(
            ["N", "real + stand-in", "omni s min/med/max (runs)",
             "Ansible s min/med/max (runs)", "Ansible / omni", "SSH conns omni",
             "SSH conns Ansible", "omni peak RSS MiB", "omni results", "Ansible results"],
            rows, [True, False, False, False, True, False, False, True, False, False]),
        "",
        f"![health-check time against N]({PLOT})",
        "",
        *_check_breakdown(r),
    ]


def _check_breakdown(r: Mapping[str, Any]) -> list[str]:
    """Where omni's health-check time goes: mean seconds per tenant and per check."""
    rows = []
    names: list[str] = []
    for h in r.get("health") or []:
        last = h["omni"][-1]
        means = last.get("check_seconds_mean") or {}
        if not means:
            continue
        names = names or list(means)
        rows.append([h["n"], last.get("tenant_seconds_mean"),
                     *[means.get(name) for name in names]])
    if not rows:
        return []
    return [
        "Where omni's time goes (last run per N): mean seconds per tenant, and per check, "
        "as omni's own JSON reports them (tenants run in parallel, so the wall time is "
        "about N x the tenant mean / parallelism):",
        "",
        markdown_table(["N", "per tenant s", *[f"{n} s" for n in names]], rows,
                       [True] * (len(names) + 2)),
        "",
    ]


def _connections(r: Mapping[str, Any]) -> list[str]:
    """Issue 12 item 3 in one table: SSH connections each command opened, per host."""
    rows: list[list[object]] = []
    for h in r.get("health") or []:
        rows.append([f"`omni health-check` ({h['n']} tenants)", len(h["omni"]),
                     _conns(h["omni"])])
        if h.get("ansible"):
            rows.append([f"Ansible playbook ({h['n']} tenants, {h.get('ansible_forks')} forks)",
                         len(h["ansible"]), _conns(h["ansible"])])
    for command, runs in (r.get("rolls") or {}).items():
        for run in runs:
            rows.append([f"`{command}` --parallel {run['parallel']} ({run['tenants']} tenants)",
                         1, _conns([run])])
    b = r.get("backup")
    if b:
        rows.append([f"`omni backup --all` ({b['tenants']} tenants)", len(b["omni"]),
                     _conns(b["omni"])])
    c = r.get("create_real") or {}
    if c.get("ssh_connections"):
        rows.append([f"`omni tenant create`, {c['tenants']} at once (one process each)", 1,
                     _conns([c])])
    if not rows:
        return []
    return [
        "### SSH connections opened per command",
        "",
        f"Target: {TARGETS['ssh']}, whatever the number of tenants. Counted from the lab "
        "sshd logs (omni's client key only: restic's own SFTP connections to the other host "
        "use another key and are not counted; for omni, only the command's own connections, "
        "matched by source port: see below). A range means the runs differed.",
        "",
        markdown_table(["command", "runs", "connections per host"], rows,
                       [False, True, False]),
        "",
    ]


def _statuses(runs: Sequence[Mapping[str, Any]]) -> str:
    last = runs[-1].get("summary") or {}
    return ", ".join(f"{v} {k}" for k, v in sorted(last.items()) if v) or "-"


def _ansible_ok(runs: Sequence[Mapping[str, Any]]) -> str:
    if not runs:
        return "-"
    recap = runs[-1]["recap"]
    return f"{recap['hosts'] - recap['hosts_failed']}/{recap['hosts']} tenants pass"


def _startup(r: Mapping[str, Any]) -> list[str]:
    s = r.get("startup") or {}
    if not s:
        return []
    rows = [[name, st["runs"], st["min"], st["median"], st["max"]] for name, st in s.items()]
    return [
        "### Start-up",
        "",
        f"Target: {TARGETS['help']}. `health-check` of zero tenants reads the inventory "
        "and connects nowhere.",
        "",
        markdown_table(["command", "runs", "min s", "median s", "max s"], rows,
                       [False, True, True, True, True]),
        "",
    ]


def _create(r: Mapping[str, Any]) -> list[str]:
    c = r.get("create_real")
    rows = []
    if c and c.get("per_tenant"):
        p = c["per_tenant"]
        rows.append([f"{c['tenants']} real Medusa tenant(s), in parallel", c["wall"],
                     f"{p['min']:.1f} / {p['median']:.1f} / {p['max']:.1f}"])
    for b in r.get("create_standin") or []:
        rows.append([f"{b['added']} stand-in tenant(s) (to N={b['n']}), in parallel",
                     b["wall"], f"~{b['memory_per_tenant_mib']} MiB each"])
    if not rows:
        return []
    return [
        "### Creating the fleet (set-up, for scale)",
        "",
        "Each through `omni tenant create`, at most each host's `concurrency` at once. "
        "The per-step breakdown of a create against the irreducible server work is measured "
        "elsewhere (issue 12, item 1).",
        "",
        markdown_table(["what", "wall s", "per tenant s (min/med/max) or memory"], rows,
                       [False, True, False]),
        "",
    ]


def _rolls(r: Mapping[str, Any]) -> list[str]:
    rolls = r.get("rolls") or {}
    rows = []
    for command, runs in rolls.items():
        for run in runs:
            rows.append([
                f"`{command}`" + (f" -> {run['image']}" if run.get("image") else ""),
                run["tenants"], run["parallel"], run["wall"], run["sum_tenant_seconds"],
                run["ideal"], f"{run['ratio']}x" if run.get("ratio") else "-",
                run.get("ideal_from_serial"),
                f"{run['ratio_from_serial']}x" if run.get("ratio_from_serial") else "-",
                _conns([run]),
                ", ".join(f"{v} {k}" for k, v in sorted(run["statuses"].items())) or "-",
            ])
    if not rows:
        return []
    return [
        "### migrate-all and deploy --all over the real tenants",
        "",
        f"Target: {TARGETS['rolls']}. Ideal = the largest of (sum of per-tenant times / "
        "parallelism), each host's (sum / min(parallelism, host concurrency)) and the longest "
        "tenant, from the per-tenant times of the same run (`bench/fleetlib.py: "
        "ideal_seconds`). The first ideal judges the runner's scheduling (the per-tenant "
        "times are this run's, contention included); the second takes the per-tenant times "
        "of the `--parallel 1` run, so it also shows what running tenants side by side costs "
        f"on this machine ({r['machine']['cores']} cores shared by the client, both hosts' "
        "Postgres and Docker, and Medusa's CPU-bound migrations and start-up). "
        "`migrate-all --force` dumps, migrates and health-gates each tenant; `deploy --all` "
        "is the blue/green release (dump, migrations, start beside the "
        "old one, switch, 3 s drain, stop), alternating between two images.",
        "",
        markdown_table(["command", "tenants", "--parallel", "wall s", "sum of tenant s",
                        "ideal s", "wall / ideal", "ideal from serial s",
                        "wall / serial ideal", "SSH conns", "results"], rows,
                       [False, True, True, True, True, True, True, True, True, False, False]),
        "",
    ]


def _backup(r: Mapping[str, Any]) -> list[str]:
    b = r.get("backup")
    if not b:
        return []
    o, h = b["omni_wall"], b["by_hand_wall"]
    total = max((run["bytes"] for run in b["omni"]), default=0)
    rate = f"{total / 1024 / o['median']:.0f} KiB/s" if o["median"] else "-"
    omni_ok = ", ".join(
        f"exit {run['exit']}" + (f" ({_counts(run['statuses'])})" if run.get("statuses") else "")
        for run in b["omni"])
    hand_failed = sum(len(run.get("errors") or []) for run in b["by_hand"])
    rows = [
        [f"`omni backup --all` ({b['tenants']} tenants)", o["runs"],
         f"{o['min']:.2f} / {o['median']:.2f} / {o['max']:.2f}", rate, _conns(b["omni"]),
         omni_ok],
        [f"`pg_dump -Fc | restic backup --stdin` by hand, x {b['tenants']}", h["runs"],
         f"{h['min']:.2f} / {h['median']:.2f} / {h['max']:.2f}", "-", "one per tenant",
         f"{hand_failed} failed" if hand_failed else "all ok"],
    ]
    return [
        "### backup --all against pg_dump | restic by hand",
        "",
        "By hand is one `ssh host 'pg_dump -Fc ... | restic backup --stdin'` per tenant, one "
        "after the other (what an operator's loop does). omni does more per tenant: row "
        "counts in the dump's snapshot, a second small snapshot with them, the read-back "
        "(`restic dump | pg_restore --list`) and retention (`forget` dry run, then `forget "
        "--prune`), and runs tenants in parallel within each host's concurrency.",
        "",
        markdown_table(["what", "runs", "wall s min/med/max", "dump bytes / s",
                        "SSH conns", "results"], rows,
                       [False, True, False, True, False, False]),
        "",
    ]


def _counts(statuses: Mapping[str, int]) -> str:
    return ", ".join(f"{v} {k}" for k, v in sorted(statuses.items()))


def _errors(r: Mapping[str, Any]) -> list[str]:
    """Every error a measured command reported, for the notes."""
    found = []
    b = r.get("backup") or {}
    for run in b.get("omni") or []:
        found += [f"`omni backup --all`: {e}" for e in run.get("errors") or []]
    for run in b.get("by_hand") or []:
        found += [f"by-hand backup: {e}" for e in run.get("errors") or []]
    return found


def _method() -> list[str]:
    return [
        "### How it is measured, and what it does not show",
        "",
        "- SSH connections are the `Accepted publickey` lines with the lab's client key in "
        "each lab host's sshd log (LogLevel VERBOSE) during the command. For omni only the "
        "command's own: omni runs under `bench/omni_traced.py`, which notes the source port "
        "of each SSH connection it opens, and only log lines from those ports count (other "
        "users of the same lab are not counted; `results.json` also keeps every connection "
        "in the window as `ssh_connections_all`). Ansible's are every connection with the "
        "client key in the window: run the bench on an otherwise idle lab.",
        "- The Ansible playbook is `bench/ansible/health-check.yml` (ansible-core only): each "
        "tenant is an inventory host whose `ansible_host` is its server; forks = the sum of "
        "the hosts' `concurrency` (8 on the lab), while omni's health-check runs up to each "
        "host's `check_concurrency` (16) at once, a difference in omni's favour that the "
        "table does not correct for; SSH pipelining and "
        "ControlPersist on, no fact gathering, host keys checked against a known_hosts "
        "written from the inventory's pinned keys. Its config check compares sha256 sums "
        "taken right after omni's own health-check passed (it cannot render omni's "
        "templates); its certificate check fails inside the renewal window where omni warns.",
        "- Peak RSS is the omni process's `ru_maxrss` (wait4).",
        "- Everything runs on one machine: client, both hosts, Postgres, Docker and Pebble "
        "share its cores, so parallel work competes with the servers it talks to. Real "
        "servers add network round trips.",
        "- Stand-in databases hold one small table the bench adds (`bench_standin`), so "
        "their dumps and backups carry rows.",
        "- `backup --all` runs over the real Medusa tenants only (the stand-ins' databases "
        "are nearly empty, so their throughput would say nothing).",
        "",
        "Tenant create step by step against the irreducible server work, the "
        "template-database path and the profiles of the targets missed are in their own "
        "sections of this file (`make bench-create`, and the notes after this section).",
        "",
    ]


def render_readme_summary(r: Mapping[str, Any]) -> str:
    rows = []
    for h in r.get("health") or []:
        ans = h.get("ansible_wall")
        rows.append([f"health-check, N={h['n']} ({h['standin']} stand-ins)",
                     h["omni_wall"]["median"], ans["median"] if ans else None,
                     _conns(h["omni"])])
    startup = r.get("startup") or {}
    if "omni --help" in startup:
        rows.append(["`omni --help`", startup["omni --help"]["median"],
                     (startup.get("ansible --version") or {}).get("median"), "-"])
    for command, runs in (r.get("rolls") or {}).items():
        for run in runs:
            serial = (f"; {run['ratio_from_serial']}x of the serial-times ideal"
                      if run.get("ratio_from_serial") else "")
            rows.append([f"{command} --parallel {run['parallel']} ({run['tenants']} Medusa)",
                         run["wall"], None, f"{run['ratio']}x of ideal{serial}"])
    label = r["label"]
    return "\n".join([
        f"Fleet benchmarks ({label}, {r['machine']['date'][:10]}; details in "
        "[`bench/RESULTS.md`](bench/RESULTS.md)). Reproduce: `make bench-fleet` on a running "
        "lab (full run: N = 10, 100, 300).",
        "",
        markdown_table(["measurement", "omni median s", "Ansible median s", "SSH conns / ratio"],
                       rows, [False, True, True, False]),
    ])


def main() -> None:
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "bench/results.json")
    results = json.loads(path.read_text())
    md = path.parent / "RESULTS.md"
    text = md.read_text() if md.is_file() else "# Benchmark results\n"
    md.write_text(replace_section(text, "fleet", render_results(results)))


if __name__ == "__main__":
    main()
