"""The GitHub Actions workflows in .github/workflows/ (omni-plan.yml, omni-deploy.yml).

- actionlint (through windmill_scripts/validate.sh, which installs the pinned version; it
  also runs shellcheck on every `run:` block and flags untrusted `${{ }}` in scripts);
- the security rules, as assertions: secrets only through step `env:` and only written to a
  file, never echoed; the key file is written under umask 077 and removed in an
  `if: always()` step; no insecure SSH option anywhere in the automation;
- the "changed tenant files" step, run for real against a throwaway git repository.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
WORKFLOWS = REPO / ".github" / "workflows"
VALIDATE = REPO / "windmill_scripts" / "validate.sh"
INSECURE_SSH = (
    "StrictHostKeyChecking",
    "UserKnownHostsFile",
    "ssh-keyscan",
    "AutoAddPolicy",  # refused-on-purpose
    "WarningPolicy",  # refused-on-purpose
    "known_hosts",
)


def load(name: str) -> dict[Any, Any]:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    assert isinstance(data, dict)
    return data


def steps(workflow: dict[Any, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job["steps"]]


def step_named(workflow: dict[Any, Any], prefix: str) -> dict[str, Any]:
    found = [s for s in steps(workflow) if s.get("name", "").startswith(prefix)]
    assert len(found) == 1, f"no single step named {prefix!r}"
    return found[0]


def test_actionlint_passes() -> None:
    tools = subprocess.run(
        ["bash", str(VALIDATE), "--install-only"], capture_output=True, text=True, timeout=600
    )
    if tools.returncode != 0:
        reason = f"validate.sh could not install actionlint: {tools.stderr.strip()[-300:]}"
        if os.environ.get("CI") or os.environ.get("OMNI_LAB_REQUIRED"):
            pytest.fail(reason)
        pytest.skip(reason)
    done = subprocess.run(
        ["bash", str(VALIDATE), "workflows"], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "actionlint: 2 workflows ok" in done.stderr


def test_plan_runs_on_pull_requests_touching_the_inventory() -> None:
    plan = load("omni-plan.yml")
    # PyYAML reads the bare key `on` as True.
    assert plan[True]["pull_request"]["paths"] == ["inventory/**"]
    assert plan["concurrency"]["cancel-in-progress"] is True
    assert "pull-requests" in plan["permissions"]
    assert step_named(plan, "Plan each")["run"].count("--dry-run") == 1


def test_deploy_is_serialised_gated_and_applies_the_reviewed_plan() -> None:
    deploy = load("omni-deploy.yml")
    assert deploy[True]["push"]["branches"] == ["main"]
    assert deploy[True]["push"]["paths"] == ["inventory/**"]
    assert deploy["concurrency"]["cancel-in-progress"] is False
    assert "${{" not in deploy["concurrency"]["group"], "one group for the whole inventory"
    (job,) = deploy["jobs"].values()
    assert job["environment"] == "production"
    converge = step_named(deploy, "Converge")["run"]
    assert "--expect-plan=" in converge
    assert "--dry-run" not in converge


@pytest.mark.parametrize("name", ["omni-plan.yml", "omni-deploy.yml"])
def test_actions_are_pinned_by_major_version(name: str) -> None:
    for step in steps(load(name)):
        if "uses" in step:
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+", step["uses"]), step["uses"]


@pytest.mark.parametrize("name", ["omni-plan.yml", "omni-deploy.yml"])
def test_secrets_reach_only_env_and_are_only_written_to_a_file(name: str) -> None:
    workflow = load(name)
    text = (WORKFLOWS / name).read_text()
    for step in steps(workflow):
        assert "secrets." not in step.get("run", ""), "secrets go through env:, not ${{ }}"
        assert "secrets." not in str(step.get("with", {}))
        secret_vars = [k for k, v in step.get("env", {}).items() if "secrets." in str(v)]
        for var in secret_vars:
            script = step["run"]
            assert "set -x" not in script
            for line in script.splitlines():
                if f"${var}" not in line:
                    continue
                written_to_file = re.search(r'printf .*"\$' + var + r'".*>\s*"?\$RUNNER_TEMP', line)
                emptiness_test = re.search(r'\[\[ -z "\$' + var + r'" \]\]', line)
                assert written_to_file or emptiness_test, f"{name}: secret used in: {line.strip()}"
            assert "umask 077" in script.split(f'"${var}"')[-2], "write the key under umask 077"
    assert len(re.findall(r"\$\{\{ secrets\.", text)) == 1, "one secret, one place"


@pytest.mark.parametrize("name", ["omni-plan.yml", "omni-deploy.yml"])
def test_the_key_is_removed_whatever_happens(name: str) -> None:
    cleanup = step_named(load(name), "Remove the SSH identity")
    assert cleanup["if"] == "always()"
    assert 'rm -rf -- "$RUNNER_TEMP/omni-home"' in cleanup["run"]


def test_no_insecure_ssh_option_anywhere_in_the_automation() -> None:
    files = [*WORKFLOWS.glob("*.yml"), *(REPO / "windmill_scripts").rglob("*.sh")]
    files += list((REPO / "windmill_scripts").rglob("*.yaml"))
    assert len(files) > 10
    for path in files:
        text = path.read_text()
        for word in INSECURE_SSH:
            assert word.lower() not in text.lower(), f"{path}: {word}"


def run_changed_step(
    tmp_path: Path, workflow: str, env_name: str, base: str
) -> tuple[subprocess.CompletedProcess[str], Path]:
    script = step_named(load(workflow), "Find the tenant files")["run"]
    runner_temp = tmp_path / "runner"
    runner_temp.mkdir()
    output = tmp_path / "github_output"
    done = subprocess.run(
        ["bash", "-e", "-c", script],
        cwd=tmp_path / "repo",
        env={
            "PATH": os.environ["PATH"],
            "RUNNER_TEMP": str(runner_temp),
            "GITHUB_OUTPUT": str(output),
            env_name: base,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done, runner_temp / "tenants.txt"


@pytest.fixture
def repo_with_changes(tmp_path: Path) -> str:
    """A git repo whose last commit adds one tenant, changes one and removes one."""
    repo = tmp_path / "repo"
    tenants = repo / "inventory" / "tenants"
    tenants.mkdir(parents=True)

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
            cwd=repo,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()

    git("init", "-q")
    for slug in ("kept", "changed", "removed"):
        (tenants / f"{slug}.yaml").write_text(f"slug: {slug}\n")
    (repo / "inventory" / "hosts.yaml").write_text("version: 1\n")
    git("add", ".")
    git("commit", "-q", "-m", "base")
    base = git("rev-parse", "HEAD")
    (tenants / "changed.yaml").write_text("slug: changed\nimage: new\n")
    (tenants / "added.yaml").write_text("slug: added\n")
    (tenants / "removed.yaml").unlink()
    (repo / "inventory" / "hosts.yaml").write_text("version: 1\n# edited\n")
    git("add", "-A")
    git("commit", "-q", "-m", "change")
    return base


@pytest.mark.parametrize(
    ("workflow", "env_name"),
    [("omni-plan.yml", "BASE_SHA"), ("omni-deploy.yml", "BEFORE_SHA")],
)
def test_changed_tenant_files_are_found(
    tmp_path: Path, repo_with_changes: str, workflow: str, env_name: str
) -> None:
    done, tenants = run_changed_step(tmp_path, workflow, env_name, repo_with_changes)
    assert done.returncode == 0, done.stderr
    assert sorted(tenants.read_text().split()) == ["added", "changed"]
    assert "::warning::a tenant file was removed" in done.stdout
    assert "count=2" in (tmp_path / "github_output").read_text()


def test_deploy_falls_back_to_the_parent_commit_when_before_is_unknown(
    tmp_path: Path, repo_with_changes: str
) -> None:
    done, tenants = run_changed_step(tmp_path, "omni-deploy.yml", "BEFORE_SHA", "0" * 40)
    assert done.returncode == 0, done.stderr
    assert sorted(tenants.read_text().split()) == ["added", "changed"]


def test_a_tenant_file_with_a_hostile_name_stops_the_job(
    tmp_path: Path, repo_with_changes: str
) -> None:
    repo = tmp_path / "repo"
    (repo / "inventory" / "tenants" / "$(touch pwned).yaml").write_text("slug: x\n")
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "x"],
        cwd=repo,
        check=True,
    )
    done, _ = run_changed_step(tmp_path, "omni-plan.yml", "BASE_SHA", repo_with_changes)
    assert done.returncode == 1
    assert "::error::not a tenant file name" in done.stdout
    assert not list(repo.rglob("pwned"))
