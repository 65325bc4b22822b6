"""The GitHub -> Windmill trigger (.github/scripts/windmill_run.py) against a local HTTP
server (127.0.0.1) speaking Windmill's job API: run flow/script by path, poll
jobs_u/completed/get_result_maybe, success, failure, timeout, a refused token."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / ".github" / "scripts" / "windmill_run.py"
TOKEN = "s3cret-token"
JOB = "018f3c1e-0000-4000-8000-000000000001"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("windmill_run", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FakeWindmill:
    """Jobs finish after ``polls_needed`` polls with ``success`` and ``result``."""

    def __init__(self) -> None:
        self.polls_needed = 2
        self.success = True
        self.result: Any = {"status": "success", "data": {"markdown": "<!-- omni-plan -->"}}
        self.started: list[tuple[str, dict[str, Any]]] = []
        self.polls = 0


@pytest.fixture
def windmill() -> Iterator[tuple[FakeWindmill, str]]:
    state = FakeWindmill()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def reply(self, code: int, body: str, ctype: str = "application/json") -> None:
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def authorised(self) -> bool:
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                self.reply(401, "Unauthorized", "text/plain")
                return False
            return True

        def do_POST(self) -> None:
            if not self.authorised():
                return
            prefix = "/api/w/omni/jobs/run/"
            if not self.path.startswith(prefix):
                self.reply(404, "not found", "text/plain")
                return
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state.started.append((self.path[len(prefix):], body))
            self.reply(201, JOB, "text/plain")

        def do_GET(self) -> None:
            if not self.authorised():
                return
            if self.path != f"/api/w/omni/jobs_u/completed/get_result_maybe/{JOB}":
                self.reply(404, "not found", "text/plain")
                return
            state.polls += 1
            if state.polls < state.polls_needed:
                self.reply(200, json.dumps({"completed": False, "result": None, "started": True}))
                return
            self.reply(200, json.dumps({"completed": True, "success": state.success,
                                        "result": state.result, "started": True}))

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def env(url: str, token: str = TOKEN) -> dict[str, str]:
    return {"WINDMILL_URL": url + "/", "WINDMILL_WORKSPACE": "omni", "WINDMILL_TOKEN": token}


def test_runs_the_flow_by_path_polls_and_succeeds(
    windmill: tuple[FakeWindmill, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state, url = windmill
    out = tmp_path / "result.json"
    args = {"tenants": ["acme"], "image": "medusa:1", "expect_fleet_plan": "ab" * 32}
    code = load().main(["--path", "f/omni/rollout", "--args-json", json.dumps(args),
                        "--poll", "0.01", "--result-file", str(out)], env(url))
    assert code == 0
    assert state.started == [("f/f/omni/rollout", args)]
    assert state.polls == 2
    assert json.loads(out.read_text()) == state.result
    printed = capsys.readouterr()
    assert f"{url}/run/{JOB}?workspace=omni" in printed.out
    assert TOKEN not in printed.out + printed.err


def test_a_script_runs_by_its_path(windmill: tuple[FakeWindmill, str]) -> None:
    state, url = windmill
    code = load().main(["--kind", "script", "--path", "f/omni/plan", "--poll", "0.01"], env(url))
    assert code == 0
    assert state.started == [("p/f/omni/plan", {})]


def test_a_failed_job_fails(windmill: tuple[FakeWindmill, str],
                            capsys: pytest.CaptureFixture[str]) -> None:
    state, url = windmill
    state.success = False
    state.result = {"error": {"message": "deploy failed for acme"}}
    code = load().main(["--path", "f/omni/rollout", "--poll", "0.01"], env(url))
    assert code == 1
    assert "deploy failed for acme" in capsys.readouterr().err


def test_a_job_that_never_ends_times_out(windmill: tuple[FakeWindmill, str],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    state, url = windmill
    state.polls_needed = 10**9
    code = load().main(["--path", "f/omni/rollout", "--poll", "0.05", "--timeout", "0.3"],
                       env(url))
    assert code == 3
    assert "did not finish" in capsys.readouterr().err
    assert state.polls >= 2


def test_a_refused_token_is_a_usage_error(windmill: tuple[FakeWindmill, str]) -> None:
    state, url = windmill
    assert load().main(["--path", "f/omni/rollout"], env(url, "wrong")) == 2
    assert state.started == []


def test_missing_configuration_fails_closed() -> None:
    assert load().main(["--path", "f/omni/rollout"], {}) == 2


def test_runs_as_a_command_with_exit_codes(windmill: tuple[FakeWindmill, str]) -> None:
    state, url = windmill
    state.success = False
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--path", "f/omni/rollout", "--poll", "0.01"],
        env=env(url), capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert f"/run/{JOB}" in done.stdout


def test_the_trigger_uses_only_the_standard_library() -> None:
    import ast

    tree = ast.parse(SCRIPT.read_text())
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
             for a in n.names}
    names |= {n.module.split(".")[0] for n in ast.walk(tree)
              if isinstance(n, ast.ImportFrom) and n.module}
    assert names <= set(sys.stdlib_module_names) | {"__future__"}, names
