"""The GitHub Actions workflows in .github/workflows/ (omni-checks.yml, omni-plan.yml,
omni-deploy.yml) and their helper scripts in .github/scripts/.

- actionlint (through windmill_scripts/validate.sh, which installs the pinned version; it
  also runs shellcheck on every `run:` block and flags untrusted `${{ }}` in scripts);
- the security rules, as assertions: every action pinned by commit SHA, least-privilege
  permissions, the job holding the Windmill token never checks out or runs the PR's code,
  secrets only through step `env:`, no SSH key on a GitHub runner at all;
- deploys queue and fail closed (deploy_gate.py against a local fake GitHub API);
- the "changed tenant files" step, run for real against a throwaway git repository.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
WORKFLOWS = REPO / ".github" / "workflows"
GATE = REPO / ".github" / "scripts" / "deploy_gate.py"
VALIDATE = REPO / "windmill_scripts" / "validate.sh"
NAMES = ["omni-checks.yml", "omni-plan.yml", "omni-deploy.yml"]
PATHS = ["inventory/**", "templates/**", "omni/**"]
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
    assert f"actionlint: {len(NAMES)} workflows ok" in done.stderr


def test_the_workflows_are_the_ones_tested() -> None:
    assert sorted(p.name for p in WORKFLOWS.glob("*.y*ml")) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_actions_are_pinned_by_commit_sha(name: str) -> None:
    text = (WORKFLOWS / name).read_text()
    uses = re.findall(r"uses:\s*(\S+)(.*)", text)
    assert uses
    for ref, comment in uses:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", ref), ref
        assert re.fullmatch(r"\s*# v\d+(\.\d+)*", comment), f"{ref}: add a # vX comment"


@pytest.mark.parametrize("name", NAMES)
def test_permissions_are_least_privilege(name: str) -> None:
    workflow = load(name)
    text = (WORKFLOWS / name).read_text()
    assert "write-all" not in text and "read-all" not in text
    assert workflow["permissions"] in ({}, {"contents": "read"})
    for job_name, job in workflow["jobs"].items():
        grants = job.get("permissions", {})
        assert isinstance(grants, dict), f"{name}:{job_name}: grant scopes one by one"
        writes = sorted(k for k, v in grants.items() if v == "write")
        if name == "omni-plan.yml":
            assert writes == ["pull-requests"], "only the plan job posts the comment"
        else:
            assert writes == [], f"{name}:{job_name} writes {writes}"


def test_checks_run_the_fast_tests_ruff_and_mypy_without_secrets() -> None:
    checks = load("omni-checks.yml")
    assert checks[True]["pull_request"]["paths"] == PATHS  # PyYAML reads `on` as True
    assert "secrets." not in (WORKFLOWS / "omni-checks.yml").read_text()
    runs = " ".join(s.get("run", "") for s in steps(checks))
    assert "pytest -m 'not lab'" in runs
    assert "ruff check" in runs
    assert "mypy" in runs


def test_plan_never_checks_out_or_runs_the_pull_requests_code() -> None:
    plan = load("omni-plan.yml")
    text = (WORKFLOWS / "omni-plan.yml").read_text()
    on = plan[True]
    assert list(on) == ["pull_request_target"], "the token job runs the base's workflow"
    assert on["pull_request_target"]["paths"] == PATHS
    assert "why `pull_request_target`" in text.lower()
    (job,) = plan["jobs"].values()
    assert job["if"] == "github.event.pull_request.head.repo.full_name == github.repository"
    checkouts = [s for s in job["steps"] if "actions/checkout" in s.get("uses", "")]
    assert len(checkouts) == 1
    assert checkouts[0]["with"]["ref"] == "${{ github.event.pull_request.base.sha }}"
    assert checkouts[0]["with"]["sparse-checkout"] == ".github/scripts"
    assert checkouts[0]["with"]["persist-credentials"] is False
    for word in ("head.ref", "pip install", "omni ", "merge_commit_sha", "refs/pull"):
        assert word not in "\n".join(s.get("run", "") for s in job["steps"]), word
    run = step_named(plan, "Plan the fleet")["run"]
    assert "--kind script --path f/omni/plan" in run
    assert "git_ref" in run


def test_plan_posts_one_comment_found_by_its_marker() -> None:
    script = step_named(load("omni-plan.yml"), "Post the plan")["with"]["script"]
    assert "const marker = '<!-- omni-plan -->'" in script
    assert "github-actions[bot]" in script and "startsWith(marker)" in script
    assert script.count("updateComment") == 1 and script.count("createComment") == 1
    assert "omni-plan-fingerprint:" in script and "omni-plan-commit:" in script


def test_deploy_is_queued_never_cancelled_and_runs_the_windmill_rollout() -> None:
    deploy = load("omni-deploy.yml")
    on = deploy[True]
    assert on["push"]["branches"] == ["main"]
    assert on["push"]["paths"] == PATHS
    assert set(on["workflow_dispatch"]["inputs"]) == {"tenants", "image", "plan_fingerprint"}
    assert deploy["concurrency"]["cancel-in-progress"] is False
    assert "${{" not in deploy["concurrency"]["group"], "one queue for the whole fleet"
    (job,) = deploy["jobs"].values()
    assert job["environment"] == "production"
    run = step_named(deploy, "Run the Windmill rollout")["run"]
    assert "windmill_run.py --kind flow --path f/omni/rollout" in run
    assert "set -euo pipefail" in run, "a failed or timed-out flow fails the workflow"
    text = (WORKFLOWS / "omni-deploy.yml").read_text()
    assert "converge" in text.lower() and "last SUCCESSFUL deploy" in text


@pytest.mark.parametrize("name", NAMES)
def test_secrets_reach_only_step_env(name: str) -> None:
    workflow = load(name)
    for step in steps(workflow):
        assert "secrets." not in step.get("run", ""), "secrets go through env:, not ${{ }}"
        assert "secrets." not in str(step.get("with", {}))
        for key, value in step.get("env", {}).items():
            if "secrets." in str(value):
                assert value == "${{ secrets.WINDMILL_TOKEN }}" and key == "WINDMILL_TOKEN"
                assert "windmill_run.py" in step["run"] and "set -x" not in step["run"]


def test_no_ssh_key_on_github_runners() -> None:
    for name in NAMES:
        text = (WORKFLOWS / name).read_text()
        assert "SSH_PRIVATE_KEY" not in text and ".ssh" not in text, name


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


@pytest.mark.parametrize(("workflow", "env_name"), [("omni-deploy.yml", "BEFORE_SHA")])
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
    done, _ = run_changed_step(tmp_path, "omni-deploy.yml", "BEFORE_SHA", repo_with_changes)
    assert done.returncode == 1
    assert "::error::not a tenant file name" in done.stdout
    assert not list(repo.rglob("pwned"))


# --- deploy_gate.py: the reviewed fingerprint (fail closed) and the rollout args ----------

MERGE = "a" * 40
HEAD = "b" * 40
FP = "0123456789abcdef" * 4


def gate() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_gate", GATE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def plan_comment(fp: str = FP, commit: str = HEAD, user: str = "github-actions[bot]") -> Any:
    body = f"<!-- omni-plan -->\n### omni plan\n\n<!-- omni-plan-fingerprint: {fp} -->\n"
    body += f"<!-- omni-plan-commit: {commit} -->\n"
    return {"user": {"login": user}, "body": body}


@pytest.fixture
def github() -> Iterator[tuple[dict[str, Any], dict[str, str]]]:
    """A fake GitHub REST API: state["pulls"] and state["comments"] are what it serves."""
    state: dict[str, Any] = {
        "pulls": [{"number": 7, "merged_at": "2026-01-01T00:00:00Z", "merge_commit_sha": MERGE,
                   "head": {"sha": HEAD}}],
        "comments": [{"user": {"login": "someone"}, "body": "lgtm"}, plan_comment()],
    }

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            assert self.headers["Authorization"] == "Bearer gh-token"
            if self.path == f"/repos/o/r/commits/{MERGE}/pulls":
                answer: Any = state["pulls"]
            elif self.path.startswith("/repos/o/r/issues/7/comments?per_page=100&page=1"):
                answer = state["comments"]
            else:
                self.send_response(404)
                self.end_headers()
                return
            data = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {"GITHUB_API_URL": f"http://127.0.0.1:{server.server_address[1]}",
           "GH_TOKEN": "gh-token", "GITHUB_REPOSITORY": "o/r", "GITHUB_SHA": MERGE}
    try:
        yield state, env
    finally:
        server.shutdown()
        server.server_close()


def test_the_merged_prs_plan_comment_gives_the_fingerprint(
    github: tuple[dict[str, Any], dict[str, str]], tmp_path: Path
) -> None:
    _, env = github
    env["GITHUB_OUTPUT"] = str(tmp_path / "out")
    assert gate().main(["reviewed", "--event", "push"], env) == 0
    assert (tmp_path / "out").read_text() == f"fingerprint={FP}\n"


@pytest.mark.parametrize(
    ("pulls", "comments", "reason"),
    [
        ([], None, "is not the merge of a pull request"),
        (None, [{"user": {"login": "someone"}, "body": plan_comment()["body"]}],
         "no omni plan comment"),
        (None, [plan_comment(commit="c" * 40)], "not for the merged head"),
        (None, [{"user": {"login": "github-actions[bot]"},
                 "body": "<!-- omni-plan -->\nThe production plan failed"}], "plan failed"),
    ],
)
def test_no_reviewed_plan_no_deploy(
    github: tuple[dict[str, Any], dict[str, str]],
    capsys: pytest.CaptureFixture[str],
    pulls: Any,
    comments: Any,
    reason: str,
) -> None:
    state, env = github
    if pulls is not None:
        state["pulls"] = pulls
    if comments is not None:
        state["comments"] = comments
    assert gate().main(["reviewed", "--event", "push"], env) == 1
    out = capsys.readouterr().out
    assert "::error::no deploy:" in out and reason in out


@pytest.mark.parametrize("given", ["", "not-hex", "abc"])
def test_a_dispatch_without_a_fingerprint_is_refused(given: str) -> None:
    assert gate().main(["reviewed", "--event", "workflow_dispatch"],
                       {"DISPATCH_FINGERPRINT": given}) == 1


def test_dispatch_rollout_args(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    env = {"FINGERPRINT": FP, "GITHUB_SHA": MERGE, "DISPATCH_TENANTS": "acme, blue\nzed",
           "DISPATCH_IMAGE": "medusa-store:2.21.2-r2"}
    assert gate().main(["rollouts", "--event", "workflow_dispatch", "--out", str(out)], env) == 0
    assert [json.loads(line) for line in out.read_text().splitlines()] == [
        {"tenants": ["acme", "blue", "zed"], "image": "medusa-store:2.21.2-r2",
         "git_ref": MERGE, "expect_fleet_plan": FP}]


@pytest.mark.parametrize(
    ("tenants", "image", "fp"),
    [("acme", "x; rm -rf /", FP), ("", "img:1", FP), ("Bad_Slug", "img:1", FP),
     ("acme", "img:1", "")],
)
def test_bad_dispatch_inputs_are_refused(tmp_path: Path, tenants: str, image: str,
                                         fp: str) -> None:
    env = {"FINGERPRINT": fp, "GITHUB_SHA": MERGE, "DISPATCH_TENANTS": tenants,
           "DISPATCH_IMAGE": image}
    out = tmp_path / "r.jsonl"
    assert gate().main(["rollouts", "--event", "workflow_dispatch", "--out", str(out)], env) == 1
    assert not out.exists()


def test_push_rollouts_group_the_changed_tenants_by_their_image(tmp_path: Path) -> None:
    tenants = tmp_path / "inventory" / "tenants"
    tenants.mkdir(parents=True)
    (tenants / "acme.yaml").write_text("slug: acme\nimage: medusa-store:2 # pinned\n")
    (tenants / "blue.yaml").write_text("slug: blue\nimage: 'medusa-store:3'\n")
    (tenants / "cafe.yaml").write_text("slug: cafe\nenv:\n  image: nope\nimage: medusa-store:2\n")
    listed = tmp_path / "tenants.txt"
    listed.write_text("acme\nblue\ncafe\n")
    out = tmp_path / "r.jsonl"
    argv = ["rollouts", "--event", "push", "--tenants-file", str(listed),
            "--inventory", str(tmp_path / "inventory"), "--out", str(out)]
    assert gate().main(argv, {"FINGERPRINT": FP, "GITHUB_SHA": MERGE}) == 0
    runs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["image"], r["tenants"]) for r in runs] == [
        ("medusa-store:2", ["acme", "cafe"]), ("medusa-store:3", ["blue"])]
    assert {r["git_ref"] for r in runs} == {MERGE}
    listed.write_text("")
    assert gate().main(argv, {"FINGERPRINT": FP, "GITHUB_SHA": MERGE}) == 0
    assert out.read_text() == ""
