"""Mutation testing of omni's pure core: ``make mutation``.

Stages a copy of the repository under ``build/mutation`` (git-ignored, so mutmut's
``mutants/`` never lands in the work tree), runs ``mutmut run`` there with the
``[tool.mutmut]`` settings of pyproject.toml (only the five modules below are mutated, only
their unit tests run), then prints one line per module:

    killed / (total - equivalent), the score, and the equivalent mutants excluded.

A timed-out mutant counts as killed (the tests noticed); a mutant no test reaches counts as
survived. Equivalent mutants are named below with the text of the mutated line, so an
entry that no longer matches its mutant (the code moved) is reported as stale and is not
excluded. Exit status 1 when a module scores under ``--min``.

    python tools/mutation_report.py [--min 85] [--markdown] [--survivors] [--no-run]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STAGE = ROOT / "build" / "mutation"
MODULES = (
    "omni/redact.py",
    "omni/engine/step.py",
    "omni/render.py",
    "omni/validation.py",
    "omni/inventory/checks.py",
)
COPY = ("omni", "tests", "templates", "pyproject.toml")

# Mutant name -> (text of its added line, or "-" and its removed line; why no test can
# kill it). Checked against the mutant's diff on every run: an entry whose text no longer
# matches is reported as stale and its mutant counts as a survivor.
_SPLIT_FIRST = "only item [0] of the split is used, which maxsplit does not change"
_FALSY = "hide_next is only tested for truth, and None is as false as False"
EQUIVALENT: dict[str, tuple[str, str]] = {
    "omni.redact.x__is_secret_option__mutmut_6": ('arg.split("=", )[0]', _SPLIT_FIRST),
    "omni.redact.x__is_secret_option__mutmut_9": ('arg.split("=", 2)[0]', _SPLIT_FIRST),
    "omni.redact.x_mask_argv__mutmut_2": ("hide_next = None", _FALSY),
    "omni.redact.x_mask_argv__mutmut_9": ("hide_next = None", _FALSY),
    "omni.redact.x_mask_argv__mutmut_12": ("hide_next = None", _FALSY),
    "omni.redact.x_mask_argv__mutmut_23": ('arg.split("=", )[0]', _SPLIT_FIRST),
    "omni.redact.x_mask_argv__mutmut_26": ('arg.split("=", 2)[0]', _SPLIT_FIRST),
    "omni.render.x_environment__mutmut_10": (
        "-        autoescape=False,",  # a deletion: matched against the removed line
        "dropping autoescape=False leaves jinja2's default, which is False"),
    "omni.validation.x_check_email__mutmut_12": (
        'value.rsplit("@", )[1]', "the e-mail pattern admits exactly one '@', so any split "
        "of it on '@' gives the same [1]"),
    "omni.validation.x_check_email__mutmut_13": (
        'value.split("@", 1)[1]', "the e-mail pattern admits exactly one '@', so split and "
        "rsplit agree"),
    "omni.validation.x_check_email__mutmut_15": (
        'value.rsplit("@", 2)[1]', "the e-mail pattern admits exactly one '@', so any split "
        "of it on '@' gives the same [1]"),
    "omni.inventory.checks.x_cross_file_problems__mutmut_3": (
        "problems = unknown_hosts(", "problems is still empty there, so = and += agree"),
}

STATUS = {1: "killed", 3: "killed", 0: "survived", 33: "no tests", 5: "no tests",
          36: "timeout", 24: "timeout", -24: "timeout", 152: "timeout", 255: "timeout",
          34: "skipped", 37: "type check", None: "not checked"}


@dataclass
class Score:
    module: str
    killed: int = 0
    survivors: list[str] = field(default_factory=list)
    equivalent: list[str] = field(default_factory=list)
    other: list[str] = field(default_factory=list)  # not checked, suspicious, segfault...

    @property
    def counted(self) -> int:
        return self.killed + len(self.survivors) + len(self.other)

    @property
    def percent(self) -> float:
        return 100.0 * self.killed / self.counted if self.counted else 100.0


def mutmut() -> str:
    return str(Path(sys.executable).parent / "mutmut")


def stage() -> None:
    shutil.rmtree(STAGE, ignore_errors=True)
    STAGE.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in COPY:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, STAGE / name, ignore=ignore)
        else:
            shutil.copy2(source, STAGE / name)


def run(max_children: int) -> int:
    """``mutmut run`` in the staged copy; its progress output goes to ``mutmut.log``."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    log = STAGE / "mutmut.log"
    print(f"mutmut run over {len(MODULES)} modules (log: {log.relative_to(ROOT)})", flush=True)
    with log.open("w") as out:
        code = subprocess.call([mutmut(), "run", "--max-children", str(max_children)],
                               cwd=STAGE, env=env, stdout=out, stderr=subprocess.STDOUT)
    if code != 0:
        print(log.read_text()[-3000:], file=sys.stderr)
    return code


def diff_of(name: str) -> str:
    return subprocess.run([mutmut(), "show", name], cwd=STAGE, capture_output=True,
                          text=True, check=False).stdout


def matches(diff: str, needle: str) -> bool:
    """Whether an added line of ``diff`` holds ``needle`` (a removed line, when ``needle``
    starts with '-': a mutant that only deletes)."""
    lines = [line for line in diff.splitlines() if not line.startswith(("+++", "---"))]
    if needle.startswith("-"):
        return any(line.startswith(needle) for line in lines)
    return any(line.startswith("+") and needle in line for line in lines)


def collect() -> tuple[list[Score], list[str]]:
    scores, stale = [], []
    for module in MODULES:
        meta = json.loads((STAGE / "mutants" / f"{module}.meta").read_text())
        score = Score(module)
        for name, code in sorted(meta["exit_code_by_key"].items(), key=_order):
            status = STATUS.get(code, "suspicious")
            if status in ("killed", "timeout", "type check"):
                score.killed += 1
            elif status in ("survived", "no tests"):
                if name in EQUIVALENT:
                    if matches(diff_of(name), EQUIVALENT[name][0]):
                        score.equivalent.append(name)
                        continue
                    stale.append(name)
                score.survivors.append(name)
            else:
                score.other.append(f"{name} ({status})")
        scores.append(score)
    return scores, stale


def _order(item: tuple[str, object]) -> tuple[str, int]:
    base, _, number = item[0].rpartition("__mutmut_")
    return base, int(number) if number.isdigit() else 0


def short(name: str) -> str:
    """``omni.render.x__listen__mutmut_3`` -> ``_listen#3``."""
    function = name.split(".")[-1]
    function = function.removeprefix("x_").removeprefix("x\u01c1")
    base, _, number = function.rpartition("__mutmut_")
    return f"{base.replace('ǁ', '.')}#{number}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min", type=float, default=85.0, help="lowest passing score, %%")
    parser.add_argument("--max-children", type=int, default=2)
    parser.add_argument("--no-run", action="store_true", help="report the last run only")
    parser.add_argument("--markdown", action="store_true", help="print the README table")
    parser.add_argument("--survivors", action="store_true", help="print surviving diffs")
    args = parser.parse_args()

    if not args.no_run:
        stage()
        code = run(args.max_children)
        if code != 0:
            print(f"mutmut run failed with exit status {code}", file=sys.stderr)
            return code
    scores, stale = collect()

    print()
    if args.markdown:
        print("| module | killed / total | score | equivalent (excluded) |")
        print("|---|---:|---:|---|")
    else:
        print(f"{'module':28} {'killed/total':>12} {'score':>7}  equivalent (excluded)")
    for s in scores:
        equivalent = ", ".join(short(n) for n in s.equivalent) or "none"
        if args.markdown:
            print(f"| `{s.module}` | {s.killed}/{s.counted} | {s.percent:.1f} % | {equivalent} |")
        else:
            print(f"{s.module:28} {f'{s.killed}/{s.counted}':>12} {s.percent:6.1f}%  {equivalent}")
    for name in stale:
        print(f"stale equivalent entry (its diff no longer matches): {name}")
    for s in scores:
        for name in s.other:
            print(f"not killed: {name}")
    if args.survivors:
        for s in scores:
            for name in s.survivors:
                print(diff_of(name))
    if args.markdown:
        for name in (n for s in scores for n in s.equivalent):
            print(f"- {short(name)}: {EQUIVALENT[name][1]}")
    failing = [s.module for s in scores if s.percent < args.min]
    if failing:
        print(f"under {args.min:g} %: {', '.join(failing)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
