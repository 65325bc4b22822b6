"""`omni inventory check` through the real CLI entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from omni.cli.app import run
from tests.test_inventory_loader import GOOD_TENANT, write_inventory

REPO = Path(__file__).resolve().parent.parent


def omni(*args: str, env: dict[str, str] | None = None,
         cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """The installed entry point in a child process (real stdout/stderr, real exit code)."""
    return subprocess.run(
        [sys.executable, "-m", "omni.cli", *args],
        capture_output=True, text=True, cwd=cwd, timeout=60, check=False,
        env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), **(env or {})},
    )


def test_shipped_example_inventory_passes() -> None:
    proc = omni("--inventory", "inventory", "inventory", "check")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("OK: inventory: 2 hosts (dev, netcup), 3 tenants")
    assert proc.stderr == ""


def test_json_prints_exactly_one_envelope() -> None:
    proc = omni("--inventory", "inventory", "--json", "inventory", "check")
    assert proc.returncode == 0
    envelope = json.loads(proc.stdout)  # fails on a second object or stray text
    assert proc.stdout.count("\n") == 1
    assert envelope["omni"] == 1
    assert envelope["command"] == "inventory check"
    assert envelope["status"] == "success"
    assert envelope["changed"] is False
    assert envelope["steps"] == []
    assert envelope["errors"] == []
    assert envelope["data"]["hosts"] == ["dev", "netcup"]


def test_inventory_path_comes_from_the_environment_when_no_flag(tmp_path: Path) -> None:
    inv = write_inventory(tmp_path, tenants={})
    proc = omni("inventory", "check", env={"OMNI_INVENTORY": str(inv)}, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"OK: {inv}: 2 hosts" in proc.stdout


def test_inventory_flag_beats_the_environment(tmp_path: Path) -> None:
    proc = omni("--inventory", str(REPO / "inventory"), "inventory", "check",
                env={"OMNI_INVENTORY": str(tmp_path / "nope")})
    assert proc.returncode == 0, proc.stderr


def test_every_problem_is_one_line_on_stderr_and_exit_is_2(tmp_path: Path) -> None:
    bad = {**GOOD_TENANT, "domains": ["Shop.example.com"]}
    clash = {**GOOD_TENANT, "slug": "bee", "host": "nowhere"}
    inv = write_inventory(tmp_path, tenants={"acme.yaml": bad, "bee.yaml": clash})
    proc = omni("--inventory", str(inv), "inventory", "check")
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 2, proc.stderr
    assert lines[0].startswith(f"error[invalid_inventory]: {inv}/tenants/acme.yaml: domains.0: ")
    assert "lowercase" in lines[0]
    assert lines[1].startswith(f"error[invalid_inventory]: {inv}/tenants/bee.yaml: host: ")
    assert "Traceback" not in proc.stderr


def test_problems_in_json_mode_are_in_the_envelope(tmp_path: Path) -> None:
    inv = write_inventory(tmp_path, tenants={"acme.yaml": {**GOOD_TENANT, "image": "A;B"}})
    proc = omni("--json", "--inventory", str(inv), "inventory", "check")
    assert proc.returncode == 2
    envelope = json.loads(proc.stdout)
    assert envelope["status"] == "error"
    assert [e["code"] for e in envelope["errors"]] == ["invalid_inventory"]
    assert "acme.yaml: image" in envelope["errors"][0]["message"]
    assert proc.stderr.count("\n") == 1


def test_in_process_run_returns_the_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inv = write_inventory(tmp_path, hosts="- not a mapping\n", tenants={})
    assert run(["--inventory", str(inv), "inventory", "check"]) == 2
    err = capsys.readouterr().err
    assert err == f"error[invalid_inventory]: {inv}/hosts.yaml: must be a YAML mapping " \
                  "(key: value lines)\n"
