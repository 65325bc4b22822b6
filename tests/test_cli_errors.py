"""The CLI error edge: one line `error[code]: message`, the right exit code, no traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from omni.cli.app import run
from omni.errors import ExitCode, LockHeld
from tests.test_cli_inventory import REPO, omni
from tests.test_inventory_loader import write_inventory


def test_usage_error_is_one_line_and_exits_2() -> None:
    proc = omni("--no-such-flag")
    assert proc.returncode == ExitCode.INVALID_INPUT
    assert proc.stderr.startswith("error[invalid_input]: ")
    assert "--no-such-flag" in proc.stderr
    assert proc.stderr.count("\n") == 1
    assert proc.stdout == ""


def test_usage_error_with_json_still_prints_one_envelope() -> None:
    proc = omni("--json", "hosts", "check", "--bogus")
    assert proc.returncode == 2
    envelope = json.loads(proc.stdout)
    assert envelope["status"] == "error"
    assert envelope["errors"][0]["code"] == "invalid_input"


def test_unknown_host_name_is_invalid_input_before_any_connection() -> None:
    proc = omni("--inventory", "inventory", "hosts", "check", "nowhere")
    assert proc.returncode == 2
    assert proc.stderr == "error[invalid_input]: host: unknown host 'nowhere' " \
                          "(known: dev, netcup)\n"


def test_bare_omni_shows_help_and_exits_2() -> None:
    proc = omni()
    assert proc.returncode == 2
    assert "Usage" in proc.stdout + proc.stderr
    assert "error[" not in proc.stderr


def test_help_exits_0() -> None:
    proc = omni("--help")
    assert proc.returncode == 0
    assert "inventory" in proc.stdout and "hosts" in proc.stdout


def test_a_bug_is_error_internal_exit_70_without_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import omni.usecases.inventory_check as usecase

    def boom(_path: Path) -> None:
        raise RuntimeError("kaboom\nsecond line")

    monkeypatch.setattr(usecase, "inventory_check", boom)
    monkeypatch.delenv("OMNI_DEBUG", raising=False)
    assert run(["--inventory", str(REPO / "inventory"), "inventory", "check"]) == 70
    err = capsys.readouterr().err
    assert err.startswith("error[internal]: RuntimeError: kaboom second line")
    assert "OMNI_DEBUG=1" in err
    assert err.count("\n") == 1
    assert "Traceback" not in err


def test_omni_debug_shows_the_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import omni.usecases.inventory_check as usecase

    def boom(_path: Path) -> None:
        raise RuntimeError("kaboom")

    monkeypatch.setattr(usecase, "inventory_check", boom)
    monkeypatch.setenv("OMNI_DEBUG", "1")
    assert run(["--inventory", str(REPO / "inventory"), "inventory", "check"]) == 70
    err = capsys.readouterr().err
    assert "Traceback" in err
    assert err.splitlines()[-1].startswith("error[internal]: RuntimeError: kaboom")


def test_omni_error_uses_its_own_code_and_exit_status_and_json_envelope(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import omni.usecases.inventory_check as usecase

    def held(_path: Path) -> None:
        raise LockHeld("tenant acme is locked by another omni run", tenant="acme")

    monkeypatch.setattr(usecase, "inventory_check", held)
    assert run(["--json", "--inventory", "inventory", "inventory", "check"]) == 4
    out, err = capsys.readouterr()
    envelope = json.loads(out)
    assert envelope["command"] == "inventory check"
    assert envelope["errors"] == [{"code": "lock_held", "tenant": "acme",
                                   "message": "tenant acme is locked by another omni run"}]
    assert err == "error[lock_held]: tenant acme is locked by another omni run\n"


# Libraries a command may need but the start-up of every command must not import.
REMOTE = {"paramiko", "psycopg", "docker", "cryptography", "acme", "josepy", "jinja2",
          "requests"}
# Libraries `omni --help` does without (typer needs pydantic once it parses a value).
HEAVY = REMOTE | {"pydantic", "pydantic_core", "pydantic_settings", "dotenv", "yaml"}


def loaded_after(argv: list[str], cwd: Path) -> tuple[int, set[str]]:
    """Run ``omni ARGV`` in a fresh interpreter (clean environment, ``cwd`` without a .env)
    and return its exit status and the top-level packages it imported."""
    code = (
        "import contextlib, io, sys\n"
        "from omni.cli.app import run\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    status = run({argv!r})\n"
        "print(status, ' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), "PYTHONPATH": str(REPO)},
    )
    status, _, modules = proc.stdout.strip().partition(" ")
    return int(status), set(modules.split())


def test_cli_import_does_not_load_heavy_libraries() -> None:
    code = (
        "import sys, omni.cli.app\n"
        f"heavy = [m for m in {sorted(HEAVY)!r} if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=REPO)
    assert proc.stdout.strip() == ""


def test_help_does_not_load_heavy_libraries(tmp_path: Path) -> None:
    status, modules = loaded_after(["--help"], tmp_path)
    assert status == 0
    assert "typer" in modules  # the probe sees what was imported
    assert modules & HEAVY == set()


def test_health_check_of_no_tenant_loads_no_remote_library(tmp_path: Path) -> None:
    inv = write_inventory(tmp_path, tenants={})
    status, modules = loaded_after(["--inventory", str(inv), "health-check"], tmp_path)
    assert status == 0
    assert "yaml" in modules
    assert modules & REMOTE == set()


def test_no_color_output_has_no_escape_sequences() -> None:
    proc = omni("--inventory", "inventory", "hosts", "check", "nowhere",
                env={"NO_COLOR": "1", "OMNI_COLOR": "1"})
    assert "\x1b[" not in proc.stdout + proc.stderr


def test_a_bad_setting_in_the_environment_is_invalid_input_naming_the_field() -> None:
    proc = omni("inventory", "check", env={"OMNI_DEBUG": "maybe"})
    assert proc.returncode == 2
    assert proc.stderr.startswith("error[invalid_input]: settings (OMNI_* / .env): debug: ")
    assert proc.stderr.count("\n") == 1


def test_omni_json_setting_turns_on_the_envelope() -> None:
    proc = omni("--inventory", "inventory", "inventory", "check", env={"OMNI_JSON": "1"})
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["status"] == "success"
