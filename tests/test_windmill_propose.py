"""A Windmill step that changes a tenant file proposes the change as a pull request.

After omni succeeds in the step's private checkout (the inventory at ``git_ref``), any
change under ``inventory/`` is committed on ``omni/<step>-<slugs>-<sha8>``, pushed with the
token of the Windmill resource ``github_resource`` (as an ``http.extraheader`` through
``GIT_CONFIG_*`` environment variables: never in argv) and proposed with
``POST /repos/{owner}/{repo}/pulls``; the step returns the pull request's URL, or fails
saying the change is on the hosts but not in git. Tested against a local bare repository
and a local HTTP server playing both Windmill's resource API and GitHub's pulls API.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
STEPS = REPO / "windmill_scripts" / "f" / "omni"
TOKEN = "ghs_Sup3rSecretT0ken"

# Stands in for omni-windmill-step: "deploys" by writing the image into the tenant file of
# the inventory it was given (what `omni deploy` does), unless FAKE_NO_CHANGE is set.
FAKE_RUNNER = """#!{python}
import json, os, sys
argv = sys.argv[1:]
inventory = [a for a in argv if a.startswith("--inventory=")][0].split("=", 1)[1]
if not os.environ.get("FAKE_NO_CHANGE"):
    path = os.path.join(inventory, "tenants", "acme.yaml")
    with open(path, "a") as out:
        out.write("image: medusa:2\\n")
print(json.dumps({{"status": "success", "command": "deploy", "data": {{"argv": argv}}}}))
"""

# A `git` first on PATH that records each invocation's argv and whether the token is in its
# environment, then runs the real git.
GIT_SPY = """#!{python}
import json, os, sys
with open(os.environ["GIT_SPY_LOG"], "a") as log:
    log.write(json.dumps({{"argv": sys.argv[1:], "header_in_env": any(
        k.startswith("GIT_CONFIG_VALUE") for k in os.environ)}}) + "\\n")
os.execv({git!r}, [{git!r}, *sys.argv[1:]])
"""


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def step(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"wm_propose_{name}", STEPS / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class Api:
    """What the fake Windmill + GitHub server saw, and how it answers."""

    url: str = ""
    pulls_status: int = 201
    resource: dict[str, Any] = field(default_factory=dict)
    seen: list[tuple[str, str, dict[str, str], Any]] = field(default_factory=list)


@pytest.fixture
def api() -> Iterator[Api]:
    state = Api()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _headers(self) -> dict[str, str]:
            return {k.lower(): v for k, v in self.headers.items()}

        def _answer(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            state.seen.append(("GET", self.path, self._headers(), None))
            if self.path == "/api/w/ops/resources/get_value_interpolated/f/omni/github":
                self._answer(200, state.resource)
            else:
                self._answer(404, {"error": "not found"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length))
            state.seen.append(("POST", self.path, self._headers(), body))
            if self.path != "/gh/repos/acme/infra/pulls":
                self._answer(404, {"message": "Not Found"})
            elif state.pulls_status != 201:
                self._answer(state.pulls_status, {"message": "Validation Failed"})
            else:
                self._answer(201, {"html_url": "https://github.example/acme/infra/pull/7",
                                   "number": 7})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@dataclass
class World:
    bare: Path
    commit: str
    spy_log: Path


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, api: Api) -> World:
    work = tmp_path / "work"
    (work / "inventory" / "tenants").mkdir(parents=True)
    git(work, "init", "-q", "-b", "main")
    (work / "inventory" / "hosts.yaml").write_text("hosts: {}\n")
    (work / "inventory" / "tenants" / "acme.yaml").write_text("slug: acme\n")
    git(work, "add", ".")
    git(work, "commit", "-qm", "inventory")
    commit = git(work, "rev-parse", "HEAD")
    bare = tmp_path / "origin.git"
    git(tmp_path, "clone", "-q", "--bare", str(work), str(bare))

    runner = tmp_path / "fake-runner"
    runner.write_text(FAKE_RUNNER.format(python=sys.executable))
    runner.chmod(0o755)
    spy_dir = tmp_path / "spy"
    spy_dir.mkdir()
    real_git = shutil.which("git")
    assert real_git
    (spy_dir / "git").write_text(GIT_SPY.format(python=sys.executable, git=real_git))
    (spy_dir / "git").chmod(0o755)
    spy_log = tmp_path / "git.log"
    monkeypatch.setenv("PATH", f"{spy_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("GIT_SPY_LOG", str(spy_log))
    monkeypatch.setenv("OMNI_WINDMILL_STEP", str(runner))
    monkeypatch.setenv("OMNI_INVENTORY_REPO", str(bare))
    monkeypatch.setenv("BASE_INTERNAL_URL", api.url)
    monkeypatch.setenv("WM_WORKSPACE", "ops")
    monkeypatch.setenv("WM_TOKEN", "job-token")
    monkeypatch.setenv("WM_JOB_ID", "job-42")
    monkeypatch.delenv("GIT_CONFIG_COUNT", raising=False)
    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    monkeypatch.setattr(tempfile, "tempdir", None)  # honour TMPDIR
    api.resource = {"token": TOKEN, "repository": "acme/infra", "base": "main",
                    "api_url": f"{api.url}/gh"}
    return World(bare, commit, spy_log)


def deploy(world: World) -> dict[str, Any]:
    result: dict[str, Any] = step("deploy").main(
        image="medusa:2", slugs=["acme"], expect_plan="fp1", git_ref=world.commit,
        inventory="/unused")
    return result


def spied(world: World) -> list[dict[str, Any]]:
    return [json.loads(line) for line in world.spy_log.read_text().splitlines()]


def test_a_changed_tenant_file_becomes_a_pull_request(
    world: World, api: Api, capfd: pytest.CaptureFixture[str]
) -> None:
    envelope = deploy(world)
    pull = envelope["pull_request"]
    assert pull["url"] == "https://github.example/acme/infra/pull/7"
    assert pull["files"] == ["inventory/tenants/acme.yaml"]
    assert pull["branch"] == f"omni/deploy-acme-{pull['commit'][:8]}"

    # The branch is on the remote, one commit on top of git_ref, with the change.
    head = git(world.bare, "rev-parse", f"refs/heads/{pull['branch']}")
    assert head == pull["commit"]
    assert git(world.bare, "rev-parse", f"{head}^") == world.commit
    assert git(world.bare, "show", f"{head}:inventory/tenants/acme.yaml") == (
        "slug: acme\nimage: medusa:2")
    assert git(world.bare, "rev-parse", "refs/heads/main") == world.commit, "main untouched"

    posts = [s for s in api.seen if s[0] == "POST"]
    assert len(posts) == 1
    _, path, headers, body = posts[0]
    assert path == "/gh/repos/acme/infra/pulls"
    assert headers["authorization"] == f"Bearer {TOKEN}"
    assert headers["x-github-api-version"] == "2022-11-28"
    assert body["head"] == pull["branch"] and body["base"] == "main"
    assert "inventory/tenants/acme.yaml" in body["body"] and "job-42" in body["body"]

    calls = spied(world)
    push = [c for c in calls if "push" in c["argv"]]
    assert len(push) == 1 and push[0]["header_in_env"], "the token reaches git via env"
    assert all(TOKEN not in " ".join(c["argv"]) for c in calls), "never in argv"
    out, err = capfd.readouterr()
    assert TOKEN not in out + err
    assert list(Path(os.environ["TMPDIR"]).iterdir()) == [], "the checkout is removed"


def test_nothing_changed_nothing_proposed(
    world: World, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_NO_CHANGE", "1")
    envelope = deploy(world)
    assert envelope["pull_request"] is None
    assert [s for s in api.seen if s[0] == "POST"] == []
    assert git(world.bare, "for-each-ref", "--format=%(refname)") == "refs/heads/main"


@pytest.mark.parametrize(("breakage", "reason"), [
    ("pulls_422", "answered 422"),
    ("push_refused", "git push failed"),
    ("no_token", "KeyError"),
])
def test_a_change_that_cannot_be_proposed_fails_the_step(
    world: World, api: Api, breakage: str, reason: str, tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    if breakage == "pulls_422":
        api.pulls_status = 422
    elif breakage == "push_refused":
        api.resource["push_url"] = str(tmp_path / "no-such-remote.git")
    else:
        del api.resource["token"]
    with pytest.raises(RuntimeError) as failed:
        deploy(world)
    message = str(failed.value)
    assert "applied on the hosts" in message
    assert "could not be proposed as a pull request" in message
    assert "inventory/tenants/acme.yaml" in message
    assert reason in message
    out, err = capfd.readouterr()
    assert TOKEN not in message + out + err


@pytest.mark.parametrize(("name", "args"), [
    ("deploy", {"image": "m:2", "slugs": ["acme"], "expect_plan": "fp"}),
    ("tenant_create", {"slug": "acme", "expect_plan": "fp"}),
    ("rollback", {"slug": "acme", "expect_plan": "fp"}),
    ("tenant_destroy", {"slug": "acme", "confirm": "acme", "expect_plan": "fp"}),
])
def test_steps_that_write_tenant_files_apply_only_on_the_inventory_from_git(
    world: World, name: str, args: dict[str, Any]
) -> None:
    module = step(name)
    with pytest.raises(ValueError, match="git_ref"):
        module.main(**args, inventory="/srv/inventory")
    assert not world.spy_log.exists(), "refused before any git or omni ran"
