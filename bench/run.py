"""Benchmarks of omni's commands against the lab (``make bench``).

Runs each command as an operator would (the real CLI in a subprocess, against a private
copy of the lab inventory), repeats it, and writes a results table to
``bench/RESULTS.md``. Needs a running lab (``make lab``). Timings are measurements for
people to read; no test asserts on them.
"""

from __future__ import annotations

import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.fleetlib import replace_section  # noqa: E402

LAB_INVENTORY = Path(os.environ.get("OMNI_LAB_INVENTORY") or REPO / ".lab" / "inventory")
OMNI = [sys.executable, "-m", "omni.cli"]


@dataclass(frozen=True)
class Measurement:
    name: str
    runs: int
    median: float
    fastest: float
    slowest: float
    note: str


def timed(argv: Sequence[str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
        env={**os.environ, "NO_COLOR": "1"},
    )
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"bench: {' '.join(argv[3:])} failed ({proc.returncode}): {proc.stderr}")
    return elapsed


def measure(name: str, argvs: Sequence[Sequence[str]], note: str) -> Measurement:
    samples = [timed(argv) for argv in argvs]
    print(f"{name}: median {statistics.median(samples):.2f}s over {len(samples)}", flush=True)
    return Measurement(
        name, len(samples), statistics.median(samples), min(samples), max(samples), note
    )


def main() -> None:
    if not (LAB_INVENTORY / "hosts.yaml").is_file():
        raise SystemExit("bench: no lab inventory: run `make lab` first")
    work = Path(tempfile.mkdtemp(prefix="omni-bench-"))
    inventory = work / "inventory"
    (inventory / "tenants").mkdir(parents=True)
    shutil.copy(LAB_INVENTORY / "hosts.yaml", inventory / "hosts.yaml")
    base = [*OMNI, "--inventory", str(inventory)]
    slugs = [f"bench-{secrets.token_hex(3)}" for _ in range(2)]
    creates = [
        [
            *base,
            "tenant",
            "create",
            slug,
            "--host",
            "dev",
            "--domain",
            f"{slug}.dev.lab.test",
            "--image",
            "omni-lab/medusa:v1",
        ]
        for slug in slugs
    ]
    results: list[Measurement] = []
    try:
        results.append(
            measure(
                "`omni --help` (CLI start-up)",
                [[*OMNI, "--help"]] * 10,
                "no heavy import on the start-up path",
            )
        )
        results.append(
            measure(
                "`omni inventory check`", [[*base, "inventory", "check"]] * 10, "reads files only"
            )
        )
        results.append(
            measure(
                "`omni hosts check` (2 hosts)",
                [[*base, "hosts", "check"]] * 5,
                "hosts checked concurrently over SSH",
            )
        )
        results.append(
            measure(
                "`omni tenant create` (new tenant, end to end)",
                creates,
                "role, db, Redis, migrations, Medusa, Pebble cert, vhost, health gate",
            )
        )
        converge = [*base, "tenant", "create", slugs[0]]
        results.append(
            measure(
                "`omni tenant create` (converged: all no-ops)",
                [converge] * 5,
                "observe + plan + verify + health gate",
            )
        )
        results.append(
            measure(
                "`omni tenant create --dry-run` (converged)",
                [[*converge, "--dry-run"]] * 5,
                "observe + plan only",
            )
        )
        results.append(
            measure(
                "`omni tenant list` (probes health + cert)",
                [[*base, "tenant", "list"]] * 5,
                "HTTPS probes, concurrent",
            )
        )
        results.append(
            measure(
                "`omni tenant destroy --yes`",
                [[*base, "tenant", "destroy", slug, "--yes"] for slug in slugs],
                "pg_dump, then remove everything",
            )
        )
    finally:
        for slug in slugs:
            if (inventory / "tenants" / f"{slug}.yaml").exists():
                subprocess.run(
                    [*base, "tenant", "destroy", slug, "--yes"],
                    capture_output=True,
                    check=False,
                    cwd=REPO,
                )
        shutil.rmtree(work, ignore_errors=True)
    write_results(results)


def write_results(results: Sequence[Measurement]) -> None:
    machine = f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}"
    lines = [
        "## Single commands (`bench/run.py`)",
        "",
        f"`make bench` on {datetime.now(UTC):%Y-%m-%d} ({machine}), against the lab "
        "(two hosts on loopback, real sshd/Postgres/Docker/nginx/Pebble). Wall-clock seconds "
        "of the whole CLI process.",
        "",
        "| command | runs | median s | fastest s | slowest s | what it does |",
        "|---|---:|---:|---:|---:|---|",
    ]
    lines += [
        f"| {m.name} | {m.runs} | {m.median:.2f} | {m.fastest:.2f} | {m.slowest:.2f} | {m.note} |"
        for m in results
    ]
    # bench/fleet.py writes its own section of the same file.
    path = REPO / "bench" / "RESULTS.md"
    text = path.read_text() if path.is_file() else "# Benchmark results\n"
    if "<!-- commands:start -->" not in text and text.startswith("# Benchmark results\n\n`"):
        text = "# Benchmark results\n"  # the old single-section layout: replaced whole
    path.write_text(replace_section(text, "commands", "\n".join(lines)))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
