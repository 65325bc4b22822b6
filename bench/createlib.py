"""Pure helpers of the create breakdown bench (``bench/create_breakdown.py``): parsing what
omni and the lab host print, the step timeline, the irreducible server work beside each step,
overhead arithmetic, py-spy profile attribution and the results' Markdown. No I/O here:
every function is unit-tested in ``tests/test_bench_createlib.py``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bench.fleetlib import Stats, markdown_table, stats

# ``   ok postgres.database (17.6s)``: omni's progress line for a finished step.
_PROGRESS = re.compile(r"^\s+ok (\S+) \(([\d.]+)s\)\s*$")
# psql's ``\timing``: ``Time: 12.345 ms`` or ``Time: 1234.567 ms (00:01.235)``.
_PSQL_TIME = re.compile(r"^Time: ([\d.]+) ms", re.MULTILINE)
# What the bench's server-side scripts print: ``mark <name> <$EPOCHREALTIME>``.
_MARK = re.compile(r"^mark (\S+) (\d+(?:[.,]\d+)?)\s*$", re.MULTILINE)

# The steps of a new real Medusa tenant, in apply order, then the health gate.
SMALL_WRITES = ("tenant.secrets", "postgres.role", "postgres.maintenance", "medusa.env",
                "redis.config", "network.sockets")
SMALL_CONTAINERS = ("network.gateway", "network.publish", "redis.container")
_MEDUSA_BOUND = ("medusa.migrations", "medusa.publishable_key")


def progress_steps(stderr: str) -> dict[str, float]:
    """Each finished step's seconds from omni's progress lines (0.1 s resolution)."""
    found: dict[str, float] = {}
    for line in stderr.splitlines():
        match = _PROGRESS.match(line)
        if match:
            found[match.group(1)] = float(match.group(2))
    return found


def psql_ms(output: str) -> list[float]:
    """Every ``\\timing`` figure psql printed, in milliseconds, in order."""
    return [float(m) for m in _PSQL_TIME.findall(output)]


def marks(output: str) -> dict[str, float]:
    """``mark NAME STAMP`` lines (bash ``$EPOCHREALTIME``) as ``{NAME: seconds}``."""
    return {m.group(1): float(m.group(2).replace(",", ".")) for m in _MARK.finditer(output)}


def between(stamps: Mapping[str, float], start: str, end: str) -> float:
    """Seconds from mark ``start`` to mark ``end``; ``KeyError`` naming a missing mark."""
    for name in (start, end):
        if name not in stamps:
            raise KeyError(f"mark {name!r} missing (have {', '.join(stamps) or 'none'})")
    return stamps[end] - stamps[start]


# ---------------------------------------------------------------- omni's own timeline


@dataclass(frozen=True)
class Timeline:
    """One ``tenant create`` process: when it was spawned and ended (parent's clock, epoch
    seconds) and the events ``bench/omni_timed.py`` recorded inside it."""

    spawned: float
    ended: float
    events: tuple[dict[str, object], ...]

    @property
    def wall(self) -> float:
        return self.ended - self.spawned

    def _at(self, event: str) -> float | None:
        for item in self.events:
            if item.get("event") == event:
                return float(str(item["t"]))
        return None

    def steps(self) -> dict[str, float]:
        """Each step's seconds (apply steps and the health gate), from its start and end
        events; a step seen twice (never, in one create) keeps the sum."""
        started: dict[str, float] = {}
        found: dict[str, float] = {}
        for item in self.events:
            step = str(item.get("step", ""))
            if item.get("event") == "step_start":
                started[step] = float(str(item["t"]))
            elif item.get("event") == "step_end" and step in started:
                found[step] = found.get(step, 0.0) + float(str(item["t"])) - started.pop(step)
        return found

    def remote_commands(self) -> dict[str, Any]:
        """The commands omni ran on the host: ``runs`` (SSH exec, waited for: count,
        seconds, count per program) and ``streams`` (long-lived processes: locks, docker
        dial-stdio, socat; count per program)."""
        runs: dict[str, int] = {}
        streams: dict[str, int] = {}
        locks: dict[str, int] = {}
        seconds = lock_seconds = 0.0
        per_step: dict[str, list[float]] = {}
        step = "(outside steps)"
        for item in self.events:
            event = item.get("event")
            program = str(item.get("program", "?"))
            if event == "step_start":
                step = str(item.get("step"))
            elif event == "step_end":
                step = "(outside steps)"
            elif event == "exec":
                runs[program] = runs.get(program, 0) + 1
                took = float(str(item.get("seconds", 0.0)))
                seconds += took
                per_step.setdefault(step, [0, 0.0])
                per_step[step][0] += 1
                per_step[step][1] += took
            elif event == "process":
                streams[program] = streams.get(program, 0) + 1
            elif event == "lock":
                name = str(item.get("name", "?"))
                locks[name] = locks.get(name, 0) + 1
                lock_seconds += float(str(item.get("seconds", 0.0)))
        return {"runs": sum(runs.values()), "run_seconds": seconds, "by_program": runs,
                "streams": sum(streams.values()), "streams_by_program": streams,
                "locks": sum(locks.values()), "lock_seconds": lock_seconds,
                "locks_by_name": locks,
                "by_step": {k: {"runs": int(v[0]), "seconds": v[1]}
                            for k, v in per_step.items()}}

    def phases(self) -> dict[str, float]:
        """Where the wall time went, as consecutive phases that add up to it (a phase
        whose events are missing is left out, and its time falls into the next one)."""
        order = [
            ("python start-up", "main_start"),
            ("import omni.cli.app", "cli_imported"),
            ("import the create use case (omni does it lazily)", "imported"),
            ("inventory, validation", "session_start"),
            ("open host session (lazy: connects on first use)", "session_end"),
            ("SSH connect, tenant lock, audit start", "plan_start"),
            ("observe + plan", "plan_end"),
            ("tenant file, before apply", "apply_start"),
            ("apply (steps and between)", "apply_end"),
            ("verify (re-observe)", "verify_end"),
            ("health gate", "health_end"),
        ]
        result: dict[str, float] = {}
        previous = self.spawned
        for name, event in order:
            at = self._at(event)
            if at is None:
                continue
            result[name] = at - previous
            previous = at
        verify_start = self._at("verify_start")
        if verify_start is not None and "verify (re-observe)" in result:
            # apply_end -> verify_start is result building: count it with the apply.
            gap = verify_start - (self._at("apply_end") or verify_start)
            result["verify (re-observe)"] -= gap
            result["apply (steps and between)"] = result.get("apply (steps and between)",
                                                             0.0) + gap
        result["audit, output, close, exit"] = self.ended - previous
        return result


def parse_timeline(text: str, spawned: float, ended: float) -> Timeline:
    """The JSON lines ``bench/omni_timed.py`` wrote (bad lines skipped)."""
    events = []
    for line in text.splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if isinstance(item, dict) and "event" in item and "t" in item:
            events.append(item)
    return Timeline(spawned, ended, tuple(events))


# ---------------------------------------------------------------- the irreducible work


@dataclass(frozen=True)
class Irreducible:
    """The server work of one create, measured on the lab host without omni (seconds).

    ``createdb``: ``CREATE DATABASE`` (empty, or ``... TEMPLATE``); ``handover``: the
    template path's ``REASSIGN OWNED`` (0 on the migrating path); ``migrate``: ``docker run
    --rm ... medusa db:migrate`` (0 on the template path); ``small_container``: ``docker run
    -d`` of a Redis container until it answers PING (omni starts three such: two gateways
    and Redis); ``app_run``: ``docker run -d`` of Medusa until it returned; ``app_healthy``:
    from that ``docker run`` to the first ``/health`` 200; ``oneoff``: ``medusa exec`` of
    omni's onboarding script (the publishable key) in a one-off container; ``acme``: one
    ACME order, raw protocol with tight polling; ``nginx``: ``nginx -t`` + reload + until
    the new vhost answers over HTTP and HTTPS."""

    createdb: float
    handover: float
    migrate: float
    small_container: float
    app_run: float
    app_healthy: float
    oneoff: float
    acme: float
    nginx: float

    def named_five(self) -> float:
        """The five parts the issue names: createdb, migrate, start to healthy, ACME
        order, nginx reload."""
        return self.createdb + self.migrate + self.app_healthy + self.acme + self.nginx

    def serial_sum(self) -> float:
        """All the server work one after the other: the five, plus the template path's
        hand-over, the three small containers and the onboarding one-off."""
        return (self.named_five() + self.handover + len(SMALL_CONTAINERS) * self.small_container
                + self.oneoff)

    def critical_path(self) -> float:
        """The least wall time of the same work in omni's order, where the app boots while
        the certificate is ordered and the vhost installed (omni starts the app first and
        waits for it only in the publishable-key step): the serial sum with ``app_healthy``
        and ``acme + nginx`` overlapped (the longer counts). ``app_run`` is inside
        ``app_healthy``."""
        overlapped = max(self.app_healthy, self.acme + self.nginx)
        return (self.createdb + self.handover + self.migrate
                + len(SMALL_CONTAINERS) * self.small_container + overlapped + self.oneoff)


def step_counterparts(work: Irreducible) -> dict[str, float | None]:
    """Each omni step's own irreducible server work (None: nothing measured beside it,
    only files and single SQL statements, milliseconds each). The publishable-key step's
    counterpart is the one-off alone: its wait for the app's boot is in ``app_healthy``."""
    pairs: dict[str, float | None] = {step: None for step in SMALL_WRITES}
    pairs.update({step: work.small_container for step in SMALL_CONTAINERS})
    pairs.update({
        "postgres.database": work.createdb + work.handover,
        "medusa.migrations": work.migrate if work.migrate else None,
        "medusa.app": work.app_run,
        "acme.certificate": work.acme,
        "nginx.vhost": work.nginx,
        "medusa.publishable_key": work.oneoff,
        "health.gate": None,
    })
    return pairs


@dataclass(frozen=True)
class Breakdown:
    """One create beside the server work measured right after it."""

    wall: float
    steps: Mapping[str, float]
    work: Irreducible

    @property
    def step_sum(self) -> float:
        return sum(self.steps.values())

    @property
    def non_step(self) -> float:
        """Wall minus omni's step times: CLI start, SSH, lock, observe/plan, verify, exit."""
        return self.wall - self.step_sum

    @property
    def overhead_serial(self) -> float:
        """Wall minus the serial sum of the server work (the issue's definition)."""
        return self.wall - self.work.serial_sum()

    @property
    def overhead_outside_medusa(self) -> float:
        """omni's non-step time plus, for every step but the two whose time is mostly
        Medusa's own CPU-bound work (``medusa.migrations``, ``medusa.publishable_key``:
        its wait for the app's boot and its ``medusa exec``), the step's excess over its
        counterpart (all of it when none was measured). Less noisy on a loaded machine than
        the overheads above, but it counts steps hidden behind the app's boot too."""
        pairs = step_counterparts(self.work)
        excess = sum(seconds - (pairs.get(step) or 0.0)
                     for step, seconds in self.steps.items() if step not in _MEDUSA_BOUND)
        return self.non_step + excess

    @property
    def overhead_critical(self) -> float:
        """Wall minus the critical path of the same work in omni's order (stricter: the
        app's boot that omni already overlaps with the certificate is not counted twice)."""
        return self.wall - self.work.critical_path()


# ---------------------------------------------------------------- py-spy profiles


def main_thread_stacks(collapsed: str) -> list[tuple[list[str], int]]:
    """py-spy's ``--format raw --threads`` lines of the main thread only, as (frames,
    samples); the frame list starts below the thread's own entry. The main thread is the
    one py-spy names ``MainThread``, else the one whose stacks run the CLI (a frame in
    ``runpy`` or ``omni/cli``)."""
    by_thread: dict[str, list[tuple[list[str], int]]] = {}
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        by_thread.setdefault(frames[0], []).append((frames[1:], int(count)))
    named = [thread for thread in by_thread if thread.endswith(": MainThread")]
    if len(named) == 1:
        return by_thread[named[0]]
    best, best_count = None, -1
    for thread, items in by_thread.items():
        cli = sum(n for frames, n in items
                  if any("runpy" in f or "omni/cli" in f for f in frames))
        if cli > best_count:
            best, best_count = thread, cli
    return by_thread.get(best, []) if best is not None else []


def frame_label(frame: str) -> str:
    """py-spy's ``name (path/to/file.py:123)`` -> ``omni/nginx.py:123 name`` (the path from
    the package root: after ``site-packages/`` or from ``omni/``, else the file name)."""
    match = re.match(r"^(.*) \((.*?)(?::(\d+))?\)$", frame)
    if not match:
        return frame
    name, path, line = match.groups()
    if "site-packages/" in path:
        path = path.rsplit("site-packages/", 1)[1]
    elif path.startswith(("omni/", "bench/")):
        pass
    elif "/omni/" in path:
        path = "omni/" + path.rsplit("/omni/", 1)[1]
    elif "/bench/" in path:
        path = "bench/" + path.rsplit("/bench/", 1)[1]
    else:
        path = path.rsplit("/", 1)[-1]
    return f"{path}:{line} {name}" if line else f"{path} {name}"


def attribute(stacks: Sequence[tuple[list[str], int]],
              rules: Sequence[tuple[str, Sequence[str]]]) -> dict[str, int]:
    """Samples per category: the first rule ``(category, patterns)`` whose every regular
    expression matches some frame of a stack; ``other`` when none does."""
    totals: dict[str, int] = {}
    compiled = [(name, [re.compile(p) for p in patterns]) for name, patterns in rules]
    for frames, count in stacks:
        category = next((name for name, patterns in compiled
                         if all(any(p.search(f) for f in frames) for p in patterns)), "other")
        totals[category] = totals.get(category, 0) + count
    return totals


def top_frames(stacks: Sequence[tuple[list[str], int]], count: int,
               pattern: str | None = None) -> list[tuple[str, int]]:
    """The ``count`` frames (labelled) holding the most samples, most first: per stack the
    innermost frame, or with ``pattern`` the innermost frame matching that regular
    expression (stacks with none are left out)."""
    wanted = re.compile(pattern) if pattern else None
    totals: dict[str, int] = {}
    for frames, samples in stacks:
        frame = next((f for f in reversed(frames) if wanted is None or wanted.search(f)), None)
        if frame is not None:
            label = frame_label(frame)
            totals[label] = totals.get(label, 0) + samples
    return sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))[:count]


# ---------------------------------------------------------------- Markdown


def stats_cell(samples: Sequence[float | None], digits: int = 2) -> str:
    """``min / median / max`` of the numbers among ``samples``; ``-`` when none."""
    numbers = [s for s in samples if s is not None]
    if not numbers:
        return "-"
    st: Stats = stats(numbers)
    return f"{st.min:.{digits}f} / {st.median:.{digits}f} / {st.max:.{digits}f}"


def med(samples: Sequence[float]) -> float:
    return stats(samples).median


def breakdown_table(rows: Sequence[Breakdown], step_order: Sequence[str]) -> str:
    """Per omni step: its seconds beside its irreducible counterpart (min / median / max
    over the runs), then the totals and overheads."""
    lines = []
    for step in step_order:
        omni = [r.steps[step] for r in rows if step in r.steps]
        if not omni:
            continue
        beside = [step_counterparts(r.work).get(step) for r in rows]
        numbers = [b for b in beside if b is not None]
        gap = ([r.steps[step] - b for r, b in zip(rows, beside, strict=True)
                if b is not None and step in r.steps] if numbers else [])
        lines.append((f"`{step}`", stats_cell(omni), _COUNTERPART.get(step, "-"),
                      stats_cell(numbers), stats_cell(gap)))
    lines.append(("**sum of omni's steps**", stats_cell([r.step_sum for r in rows]), "", "",
                  ""))
    lines.append(("**omni's non-step time** (wall - steps)",
                  stats_cell([r.non_step for r in rows]),
                  "CLI start, SSH, lock, observe/plan, verify, exit", "", ""))
    lines.append(("**whole CLI wall**", stats_cell([r.wall for r in rows]),
                  "the five named parts (createdb, migrate, start to healthy, ACME, nginx)",
                  stats_cell([r.work.named_five() for r in rows]), ""))
    lines.append(("", "", "all server work, one after the other",
                  stats_cell([r.work.serial_sum() for r in rows]),
                  stats_cell([r.overhead_serial for r in rows])))
    lines.append(("", "", "same work on omni's critical path (boot overlaps ACME + nginx)",
                  stats_cell([r.work.critical_path() for r in rows]),
                  stats_cell([r.overhead_critical for r in rows])))
    lines.append(("", "", "outside Medusa's own work: non-step time + every other step's "
                  "excess over its counterpart", "",
                  stats_cell([r.overhead_outside_medusa for r in rows])))
    return markdown_table(
        ["omni step", "omni s (min / med / max)", "irreducible server work beside it",
         "server s (min / med / max)", "omni - server s"],
        lines, right=[False, True, False, True, True])


_COUNTERPART = {
    "tenant.secrets": "(a file write; not measured)",
    "postgres.role": "(one SQL statement; not measured)",
    "postgres.maintenance": "(two SQL statements; not measured)",
    "medusa.env": "(a file write; not measured)",
    "redis.config": "(a file write; not measured)",
    "network.sockets": "(a mkdir; not measured)",
    "network.gateway": "`docker run -d` of a Redis container to PING",
    "network.publish": "`docker run -d` of a Redis container to PING",
    "redis.container": "`docker run -d` of a Redis container to PING",
    "postgres.database": "`CREATE DATABASE` (+ `REASSIGN OWNED` on the template path)",
    "medusa.migrations": "`docker run --rm ... medusa db:migrate`",
    "medusa.app": "`docker run -d` of Medusa (until it returns)",
    "acme.certificate": "one ACME order, raw protocol, 20 ms polls",
    "nginx.vhost": "`nginx -t` + reload + new vhost answers (HTTP + HTTPS)",
    "medusa.publishable_key": "`medusa exec` onboarding one-off (the app's boot: below)",
    "health.gate": "(app already healthy)",
}


def target_line(name: str, value: float, limit: float) -> str:
    """``name: 12.3 s (target < 20 s): met`` on the median."""
    verdict = "met" if value < limit else "**missed**"
    return f"{name}: median {value:.2f} s (target < {limit:g} s): {verdict}"
