"""Windmill steps read the inventory from git at a known commit, refuse to apply without
the approved plan, and the sync config touches only f/omni/**.

- ``git_ref``: each step clones the inventory repository (``$OMNI_INVENTORY_REPO`` or the
  Windmill variable ``repo_variable``) into a private temp dir, checks out exactly that
  commit, passes ``--inventory`` there to omni-windmill-step and removes the checkout;
  tested against a local bare repository;
- ``tenant_create`` / ``deploy`` refuse to apply without ``expect_plan``;
- ``wmill.yaml`` includes only ``f/omni/**``; folder metadata and the lock file exist;
- the rollout flow starts with the fleet plan gate and reads the inventory at ``git_ref``.
"""

from __future__ import annotations

import importlib.util
import json
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
WM = REPO / "windmill_scripts"
STEPS = WM / "f" / "omni"

FAKE_RUNNER = """#!/usr/bin/env python3
import json, os, sys
inventory = [a for a in sys.argv[1:] if a.startswith("--inventory=")][0].split("=", 1)[1]
hosts = os.path.join(inventory, "hosts.yaml")
print(json.dumps({"status": "success", "data": {
    "inventory": inventory, "hosts": open(hosts).read(),
    "mode": oct(os.stat(os.path.dirname(os.path.dirname(inventory))).st_mode & 0o777),
    "argv": sys.argv[1:]}}))
"""


def step(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"wm_{name}", STEPS / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def origin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str, str]:
    """A bare repository with two commits of inventory/hosts.yaml: (bare, old, new)."""
    work = tmp_path / "work"
    (work / "inventory").mkdir(parents=True)
    git(work, "init", "-q", "-b", "main")
    (work / "inventory" / "hosts.yaml").write_text("version: 1\n")
    git(work, "add", ".")
    git(work, "commit", "-qm", "one")
    old = git(work, "rev-parse", "HEAD")
    (work / "inventory" / "hosts.yaml").write_text("version: 2\n")
    git(work, "commit", "-qam", "two")
    new = git(work, "rev-parse", "HEAD")
    bare = tmp_path / "origin.git"
    git(tmp_path, "clone", "-q", "--bare", str(work), str(bare))
    runner = tmp_path / "fake-runner"
    runner.write_text(FAKE_RUNNER.replace("/usr/bin/env python3", sys.executable))
    runner.chmod(0o755)
    monkeypatch.setenv("OMNI_WINDMILL_STEP", str(runner))
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    return bare, old, new


def test_the_step_runs_omni_on_the_inventory_at_the_commit(
    origin: tuple[Path, str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bare, old, new = origin
    monkeypatch.setenv("OMNI_INVENTORY_REPO", str(bare))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # honour TMPDIR set above
    plan = step("plan")
    for commit, content in ((old, "version: 1\n"), (new, "version: 2\n")):
        envelope = plan.main(git_ref=commit, inventory="/srv/ignored")
        data = envelope["data"]
        assert data["hosts"] == content
        assert data["inventory"].startswith(str(tmp_path / "tmp" / "omni-inventory-"))
        assert data["mode"] == "0o700", "a private checkout"
        assert f"--inventory={data['inventory']}" in data["argv"]
        assert not Path(data["inventory"]).exists(), "the checkout is removed afterwards"
    assert list((tmp_path / "tmp").iterdir()) == []


@pytest.mark.parametrize("ref", ["main", "HEAD", "abc123", "-x", "A" * 40])
def test_git_ref_must_be_a_full_commit_sha(origin: tuple[Path, str, str], ref: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMNI_INVENTORY_REPO", str(origin[0]))
    with pytest.raises(ValueError, match="git_ref"):
        step("plan").main(git_ref=ref)


def test_an_unknown_commit_fails_and_leaves_nothing(
    origin: tuple[Path, str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OMNI_INVENTORY_REPO", str(origin[0]))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    with pytest.raises(RuntimeError, match="cannot check out") as failed:
        step("plan").main(git_ref="f" * 40)
    assert str(origin[0]) not in str(failed.value), "the repository URL is not logged"
    assert list((tmp_path / "tmp").iterdir()) == []


def test_without_git_ref_the_given_inventory_is_used(
    origin: tuple[Path, str, str], tmp_path: Path
) -> None:
    inventory = tmp_path / "inv"
    inventory.mkdir()
    (inventory / "hosts.yaml").write_text("local\n")
    envelope = step("tenant_list").main(inventory=str(inventory))
    assert envelope["data"]["hosts"] == "local\n"


def test_the_repository_url_comes_from_a_windmill_variable(
    origin: tuple[Path, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bare, old, _ = origin
    seen: list[tuple[str, str | None]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            seen.append((self.path, self.headers.get("Authorization")))
            data = json.dumps(str(bare)).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.delenv("OMNI_INVENTORY_REPO", raising=False)
        monkeypatch.setenv("BASE_INTERNAL_URL", f"http://127.0.0.1:{server.server_address[1]}")
        monkeypatch.setenv("WM_WORKSPACE", "ops")
        monkeypatch.setenv("WM_TOKEN", "job-token")
        envelope = step("plan").main(git_ref=old)
    finally:
        server.shutdown()
        server.server_close()
    assert envelope["data"]["hosts"] == "version: 1\n"
    assert seen == [("/api/w/ops/variables/get_value/f/omni/inventory_repo_url",
                     "Bearer job-token")]


@pytest.mark.parametrize(("name", "args"), [
    ("deploy", {"image": "medusa:2", "slugs": ["acme"]}),
    ("tenant_create", {"slug": "acme"}),
    ("tenant_destroy", {"slug": "acme", "confirm": "acme"}),
    ("rollback", {"slug": "acme"}),
    ("migrate_all", {"tenants": ["acme"]}),
    ("certs_renew", {}),
    ("backup_restore", {"slug": "acme", "confirm": "acme"}),
])
def test_steps_that_apply_refuse_without_the_approved_plan(
    name: str, args: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran = tmp_path / "ran"
    runner = tmp_path / "runner"
    runner.write_text(f"#!/bin/sh\ntouch {ran}\necho '{{}}'\n")
    runner.chmod(runner.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("OMNI_WINDMILL_STEP", str(runner))
    module = step(name)
    for missing in (None, ""):
        with pytest.raises(ValueError, match="expect_plan"):
            module.main(**args, expect_plan=missing, inventory="inv")
    assert not ran.exists()
    module.main(**args, dry_run=True, inventory="inv")  # a plan needs no approval
    assert ran.exists()


def test_wmill_syncs_only_the_omni_folder() -> None:
    config = yaml.safe_load((WM / "wmill.yaml").read_text())
    assert config["includes"] == ["f/omni/**"]
    synced = [p.relative_to(WM) for p in WM.rglob("*") if p.is_file()
              and p.relative_to(WM).parts[0] == "f"]
    assert synced and all(p.parts[:2] == ("f", "omni") for p in synced)
    folder = yaml.safe_load((STEPS / "folder.meta.yaml").read_text())
    assert folder["display_name"] == "omni"
    assert folder["owners"] == ["g/omni-admins"]
    assert not any(folder["extra_perms"].values()), "nobody else may edit the folder"
    lock = yaml.safe_load((WM / "wmill-lock.yaml").read_text())
    assert lock["version"] == "v2"
    assert "f/omni/deploy" in lock["locks"]


def test_the_rollout_gates_on_the_reviewed_fleet_plan_at_git_ref() -> None:
    flow = yaml.safe_load((STEPS / "rollout.flow" / "flow.yaml").read_text())
    modules = flow["value"]["modules"]
    gate = modules[0]
    assert gate["id"] == "gate"
    assert gate["value"]["path"] == "f/omni/plan"
    transforms = gate["value"]["input_transforms"]
    assert transforms["expect_plan"]["expr"] == "flow_input.expect_fleet_plan || null"
    assert [m["id"] for m in modules].index("gate") < [m["id"] for m in modules].index(
        "approval")

    def scripts(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for module in items:
            value = module["value"]
            if value["type"] == "script":
                yield value
            yield from scripts(value.get("modules", []))

    found = [v for v in scripts(modules) if v["path"] != "f/omni/page"]
    assert len(found) == 5
    for value in found:
        assert value["input_transforms"]["git_ref"]["expr"] == "flow_input.git_ref || ''"
    assert {"git_ref", "expect_fleet_plan"} <= set(flow["schema"]["properties"])
    assert "git_ref" in flow["schema"]["required"]


def test_onboarding_reads_the_inventory_at_git_ref_in_every_step() -> None:
    flow = yaml.safe_load((STEPS / "onboard_tenant.flow" / "flow.yaml").read_text())
    steps = [m for m in flow["value"]["modules"] if m["value"]["type"] == "script"
             and m["value"]["path"] != "f/omni/page"]
    assert [m["id"] for m in steps] == ["plan", "create", "health"]
    for module in steps:
        assert module["value"]["input_transforms"]["git_ref"]["expr"] == (
            "flow_input.git_ref || ''")
    assert "git_ref" in flow["schema"]["required"]
