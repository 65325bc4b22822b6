"""``--expect-plan`` on every host-changing command whose plan is its dry run.

``apply_reviewed`` (omni/usecases/plan.py): a dry run carries ``plan_fingerprint``; a real
run with ``expect_plan`` re-plans first and refuses (exit 2) before anything changes when
the fingerprint differs. Each command (migrate-all, certs renew, rollback, tenant destroy,
backup restore) is wired to it, and its CLI takes ``--expect-plan``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from omni.engine.step import Step, Verb
from omni.errors import InvalidInput
from omni.output.result import Result
from omni.usecases import backup, certs_renew, deploy, migrate_all, tenant_destroy
from omni.usecases.plan import apply_reviewed, reviewed_fingerprint, tenant_rows

ROWS = tenant_rows("tenant", "status", "detail")


def fake(detail: str, calls: list[bool], ok: bool = True) -> Callable[[bool], Result]:
    def run(dry_run: bool) -> Result:
        calls.append(dry_run)
        data = {"tenants": [{"tenant": "a", "status": "ok", "detail": detail,
                             "seconds": 1.5 if dry_run else 9.0}]}
        if ok:
            return Result.success("x", data=data)
        return Result.failure("x", [InvalidInput("no")], data=data)
    return run


def test_a_dry_run_carries_the_fingerprint_of_what_was_reviewed() -> None:
    calls: list[bool] = []
    result = apply_reviewed(fake("would migrate", calls), dry_run=True, expect_plan=None,
                            reviewed=ROWS, command="x")
    assert calls == [True]
    assert result.data["plan_fingerprint"] == reviewed_fingerprint(
        [{"tenant": "a", "status": "ok", "detail": "would migrate"}])


def test_timings_are_not_part_of_the_fingerprint() -> None:
    first = fake("d", [])(True)
    second = fake("d", [])(False)
    assert reviewed_fingerprint(ROWS(first)) == reviewed_fingerprint(ROWS(second))


def test_the_reviewed_plan_applies() -> None:
    calls: list[bool] = []
    expected = reviewed_fingerprint(ROWS(fake("d", [])(True)))
    result = apply_reviewed(fake("d", calls), dry_run=False, expect_plan=expected,
                            reviewed=ROWS, command="x")
    assert calls == [True, False], "re-planned, then applied"
    assert result.data["plan_fingerprint"] == expected


@pytest.mark.parametrize(("detail", "ok"), [("something else now", True), ("d", False)])
def test_a_plan_that_drifted_or_failed_is_refused_before_anything_runs(
    detail: str, ok: bool
) -> None:
    calls: list[bool] = []
    expected = reviewed_fingerprint(ROWS(fake("d", [])(True)))
    with pytest.raises(InvalidInput, match="changed since it was reviewed") as refused:
        apply_reviewed(fake(detail, calls, ok), dry_run=False, expect_plan=expected,
                       reviewed=ROWS, command="x")
    assert calls == [True], "never the real run"
    assert refused.value.to_dict()["field"] == "expect_plan"


def test_without_a_fingerprint_a_real_run_is_just_the_run() -> None:
    calls: list[bool] = []
    apply_reviewed(fake("d", calls), dry_run=False, expect_plan=None, reviewed=ROWS,
                   command="x")
    assert calls == [False]


# Each command's use case goes through apply_reviewed: replace its inner run with a fake
# and check a drifted fingerprint stops it before the real run.
CASES: list[tuple[Any, str, Callable[..., Any], Callable[[str | None], Any]]] = [
    (migrate_all, "_migrate_all", migrate_all.migrate_all,
     lambda fp: migrate_all.MigrateAllRequest(expect_plan=fp)),
    (certs_renew, "_renew", certs_renew.renew_certificates,
     lambda fp: certs_renew.RenewRequest(expect_plan=fp)),
    (deploy, "_rollback", deploy.rollback,
     lambda fp: deploy.RollbackRequest("a", expect_plan=fp)),
    (tenant_destroy, "_destroy", tenant_destroy.destroy_tenant,
     lambda fp: tenant_destroy.DestroyRequest("a", confirmed=True, expect_plan=fp)),
    (backup, "_restore", backup.restore_backup,
     lambda fp: backup.RestoreRequest("a", confirmed=True, expect_plan=fp)),
]


@pytest.mark.parametrize(("module", "inner", "use_case", "request_of"), CASES,
                         ids=[c[1] for c in CASES])
def test_each_host_changing_command_checks_the_fingerprint(
    monkeypatch: pytest.MonkeyPatch, module: Any, inner: str,
    use_case: Callable[..., Result], request_of: Callable[[str | None], Any],
) -> None:
    runs: list[bool] = []

    def fake_inner(request: Any, inventory_path: Path, **kwargs: Any) -> Result:
        runs.append(request.dry_run)
        return Result.success("x", data={
            "tenant": "a", "host": "dev", "snapshot": "abcd",
            "tenants": [{"tenant": "a", "host": "dev", "status": "ok", "detail": "would"}]},
            steps=[Step("postgres.database", Verb.DELETE, "drop tenant_a")])

    monkeypatch.setattr(module, inner, fake_inner)
    planned = use_case(request_of(None).__class__(
        **{**request_of(None).__dict__, "dry_run": True}), Path("/inv"))
    fingerprint = planned.data["plan_fingerprint"]
    assert runs == [True] and fingerprint
    runs.clear()
    with pytest.raises(InvalidInput, match="expect-plan"):
        use_case(request_of("0" * 16), Path("/inv"))
    assert runs == [True], "refused after the dry run, before the real run"
    runs.clear()
    applied = use_case(request_of(fingerprint), Path("/inv"))
    assert runs == [True, False]
    assert applied.data["plan_fingerprint"] == fingerprint


@pytest.mark.parametrize("command", [
    ["tenant", "create"], ["tenant", "destroy"], ["deploy"], ["rollback"], ["migrate-all"],
    ["certs", "renew"], ["backup", "restore"],
])
def test_the_cli_takes_expect_plan(command: list[str]) -> None:
    done = subprocess.run([sys.executable, "-m", "omni.cli", *command, "--help"],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"})
    assert done.returncode == 0, done.stderr
    assert "--expect-plan" in done.stdout


@pytest.mark.parametrize("command", [["migrate-all"], ["certs", "renew"]])
def test_the_cli_refuses_a_fingerprint_that_is_not_the_dry_runs(
    tmp_path: Path, command: list[str]
) -> None:
    """End to end through the CLI, on an inventory with hosts but no tenant (so no host is
    contacted): the dry run prints its fingerprint; that one applies, another exits 2."""
    inventory = tmp_path / "inventory"
    (inventory / "tenants").mkdir(parents=True)
    example = Path(__file__).resolve().parent.parent / "inventory" / "hosts.yaml"
    hosts = yaml.safe_load(example.read_text())
    for host in hosts["hosts"].values():
        host["address"] = "127.0.0.1"  # nothing connects (no tenant), but never elsewhere
    (inventory / "hosts.yaml").write_text(yaml.safe_dump(hosts))

    def omni(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "omni.cli", f"--inventory={inventory}", "--json",
             *command, *args], capture_output=True, text=True, timeout=60,
            env={**os.environ, "NO_COLOR": "1"})

    planned = omni("--dry-run")
    assert planned.returncode == 0, planned.stderr
    fingerprint = json.loads(planned.stdout)["data"]["plan_fingerprint"]
    assert re.fullmatch(r"[0-9a-f]{16}", fingerprint)
    refused = omni("--expect-plan=0000000000000000")
    assert refused.returncode == 2
    assert "error[invalid_input]: --expect-plan:" in refused.stderr
    assert f"now {fingerprint}" in refused.stderr
    applied = omni(f"--expect-plan={fingerprint}")
    assert applied.returncode == 0, applied.stderr
    assert json.loads(applied.stdout)["data"]["plan_fingerprint"] == fingerprint
