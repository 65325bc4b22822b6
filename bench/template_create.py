"""``tenant create`` with and without template databases, on the lab.

Creates (then destroys) ``--runs`` new tenants of ``--image`` on host dev on each path:
**migrating** (``postgres.template_databases: false``: Medusa's migrations run on an empty
database) and **template** (the database is copied from the image's template database, built
beforehand by one warm-up create, reported on its own: the bench first drops the image's
templates on dev, so that create is a first create of the image there), the two paths interleaved
so both see the same load. Reports wall time of the
whole CLI process and the database and migrations steps' own times (from the CLI's
progress lines), min / median / max, plus the bare server-side ``CREATE DATABASE ...
TEMPLATE`` with each ``STRATEGY``. Prints a markdown section for ``bench/RESULTS.md``.

    python bench/template_create.py [--runs 3] [--image omni-lab/medusa:v1]

Needs a running lab (``make lab``). Measurements for people; nothing asserts on them.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
LAB_INVENTORY = Path(os.environ.get("OMNI_LAB_INVENTORY") or REPO / ".lab" / "inventory")
OMNI = [sys.executable, "-m", "omni.cli"]
_STEP = re.compile(r"^\s+ok (\S+) \(([\d.]+)s\)$")


def _inventory(root: Path, template_databases: bool) -> Path:
    inventory = root / ("template" if template_databases else "migrating")
    (inventory / "tenants").mkdir(parents=True)
    data = yaml.safe_load((LAB_INVENTORY / "hosts.yaml").read_text())
    for host in data["hosts"].values():
        host.setdefault("postgres", {})["template_databases"] = template_databases
        host.pop("backup", None)  # destroy keeps a local dump only: quicker, and untimed
    (inventory / "hosts.yaml").write_text(yaml.safe_dump(data))
    return inventory


def _omni(inventory: Path, *args: str, check: bool = True) -> tuple[float, str]:
    started = time.perf_counter()
    proc = subprocess.run([*OMNI, "--inventory", str(inventory), *args], capture_output=True,
                          text=True, check=False, cwd=REPO, env={**os.environ, "NO_COLOR": "1"})
    elapsed = time.perf_counter() - started
    if check and proc.returncode != 0:
        raise SystemExit(f"bench: omni {' '.join(args)} failed ({proc.returncode}): "
                         f"{proc.stderr[-2000:]}")
    return elapsed, proc.stderr


def _create(inventory: Path, image: str) -> dict[str, float]:
    slug = f"tplbench-{secrets.token_hex(3)}"
    try:
        wall, progress = _omni(inventory, "tenant", "create", slug, "--host", "dev",
                               "--domain", f"{slug}.dev.lab.test", "--image", image)
    finally:  # also after a failed create: leave nothing behind
        _omni(inventory, "tenant", "destroy", slug, "--yes", check=False)
    steps = {m.group(1): float(m.group(2))
             for m in map(_STEP.match, progress.splitlines()) if m}
    return {"wall": wall, "database": steps.get("postgres.database", 0.0),
            "migrations": steps.get("medusa.migrations", 0.0)}


def _drop_templates(image: str) -> int:
    """Drop the lab host dev's template databases of ``image`` (so the warm-up create
    measures a first create of the image there, build included); how many were dropped."""
    from psycopg import sql

    from omni.hosts.session import HostSession
    from omni.inventory.models import HostsFile

    hosts = HostsFile.model_validate(yaml.safe_load((LAB_INVENTORY / "hosts.yaml").read_text()))
    with HostSession(hosts.hosts["dev"]) as session:
        image_id = session.docker().image_id(image)
        if image_id is None:
            raise SystemExit(f"bench: image {image} is not on host dev")
        pattern = f"omni\\_tpl\\_{image_id.removeprefix('sha256:')[:12]}\\_%"
        with session.postgres() as conn:
            names = [str(row[0]) for row in conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s", (pattern,)).fetchall()]
            for name in names:
                conn.execute(sql.SQL("ALTER DATABASE {} IS_TEMPLATE false").format(
                    sql.Identifier(name)))
                conn.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(name)))
    return len(names)


def _clone_times(runs: int) -> dict[str, list[float]]:
    """Server-side ``CREATE DATABASE ... TEMPLATE`` of the newest template, per strategy."""
    from psycopg import sql

    from omni.hosts.session import HostSession
    from omni.inventory.models import HostsFile

    hosts = HostsFile.model_validate(yaml.safe_load((LAB_INVENTORY / "hosts.yaml").read_text()))
    times: dict[str, list[float]] = {"wal_log": [], "file_copy": []}
    with HostSession(hosts.hosts["dev"]) as session, session.postgres() as conn:
        row = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'omni\\_tpl\\_%' "
                           "AND datistemplate ORDER BY oid DESC LIMIT 1").fetchone()
        if row is None:
            return times
        for strategy in times:
            for _ in range(runs):
                name = sql.Identifier(f"tplbench_clone_{secrets.token_hex(3)}")
                started = time.perf_counter()
                conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY {}").format(
                    name, sql.Identifier(str(row[0])), sql.SQL(strategy)))
                times[strategy].append(time.perf_counter() - started)
                conn.execute(sql.SQL("DROP DATABASE {}").format(name))
    return times


def _row(name: str, samples: Sequence[float]) -> str:
    return (f"| {name} | {len(samples)} | {min(samples):.2f} | {statistics.median(samples):.2f} "
            f"| {max(samples):.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--image", default="omni-lab/medusa:v1")
    args = parser.parse_args()
    if not (LAB_INVENTORY / "hosts.yaml").is_file():
        raise SystemExit("bench: no lab inventory: run `make lab` first")
    root = Path(tempfile.mkdtemp(prefix="omni-tplbench-"))
    try:
        migrating, template = _inventory(root, False), _inventory(root, True)
        _drop_templates(args.image)
        warm = _create(template, args.image)  # the first create of the image: builds it
        results: dict[str, list[dict[str, float]]] = {"migrating": [], "template": []}
        load = [os.getloadavg()[0]]
        for _ in range(args.runs):  # interleaved: both paths see the same machine load
            results["migrating"].append(_create(migrating, args.image))
            results["template"].append(_create(template, args.image))
            load.append(os.getloadavg()[0])
        clones = _clone_times(args.runs)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"`python bench/template_create.py --runs {args.runs} --image {args.image}` on "
          f"{datetime.now(UTC):%Y-%m-%d} ({os.cpu_count()} cores, {platform.machine()}, "
          f"Python {platform.python_version()}), host dev of the lab; 1-minute load average "
          f"{min(load):.1f} to {max(load):.1f}. Seconds.\n")
    print("| measurement | runs | min | median | max |\n|---|---:|---:|---:|---:|")
    for path, samples in results.items():
        print(_row(f"`tenant create`, {path} path: whole CLI process",
                   [s["wall"] for s in samples]))
        print(_row(f"  {path} path: `postgres.database` step",
                   [s["database"] for s in samples]))
        if path == "migrating":
            print(_row("  migrating path: `medusa.migrations` step",
                       [s["migrations"] for s in samples]))
    print(_row("first create of an image on a host (template built): whole process",
               [warm["wall"]]))
    print(_row("  of which `postgres.database` (build + copy)", [warm["database"]]))
    for strategy, samples in clones.items():
        if samples:
            print(_row(f"server only: `CREATE DATABASE ... TEMPLATE ... STRATEGY {strategy}`",
                       samples))


if __name__ == "__main__":
    main()
