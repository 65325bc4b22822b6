"""The Windmill steps in windmill_scripts/ and the runner they exec (omni/windmill_step.py).

- ``validate.sh windmill``: bash -n, shellcheck, ``wmill lint`` (Windmill's own schemas for
  flows and schedules) and check_metadata.py (schemas match Windmill's own bash parser; each
  step ends with ``exec omni-windmill-step``).
- The real ``omni`` CLI through the step scripts and ``omni-windmill-step``, on the example
  inventory (these commands contact no server): the envelope is the step result, the exit
  status propagates.
- A stub ``omni`` (via ``OMNI_BIN``) to check argument passing and quoting, and the handling
  of the SSH key read from a Windmill variable. The stub stands in for omni, never for a server;
  the loopback HTTP server stands in for the Windmill variables API only to test our key file
  handling (0600, private HOME, removed afterwards, never printed).
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

REPO = Path(__file__).resolve().parent.parent
STEPS = REPO / "windmill_scripts" / "f" / "omni"
VALIDATE = REPO / "windmill_scripts" / "validate.sh"
VENV_BIN = Path(sys.executable).parent
INVENTORY = REPO / "inventory"
KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "c2VjcmV0LWtleS1tYXRlcmlhbA==\n"
    "-----END OPENSSH PRIVATE KEY-----\n"
)


def _must_not_skip() -> bool:
    return bool(os.environ.get("CI") or os.environ.get("OMNI_LAB_REQUIRED"))


@pytest.fixture(scope="session")
def validation_tools() -> None:
    """Installs the pinned validators (validate.sh --install-only) once per session."""
    done = subprocess.run(
        ["bash", str(VALIDATE), "--install-only"], capture_output=True, text=True, timeout=600
    )
    if done.returncode != 0:
        reason = f"validate.sh could not install its tools: {done.stderr.strip()[-500:]}"
        if _must_not_skip():
            pytest.fail(reason)
        pytest.skip(reason)


def test_validate_windmill_folder_passes(validation_tools: None) -> None:
    done = subprocess.run(
        ["bash", str(VALIDATE), "windmill"], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    assert "wmill lint" in done.stderr
    assert "check_metadata.py" in done.stderr


def test_validate_rejects_a_flow_input_the_step_does_not_have(
    validation_tools: None, tmp_path: Path
) -> None:
    copy = tmp_path / "windmill_scripts"
    shutil.copytree(REPO / "windmill_scripts", copy)
    flow = copy / "f" / "omni" / "onboard_tenant.flow" / "flow.yaml"
    flow.write_text(flow.read_text().replace("expect_plan:", "expect_plann:", 1))
    (tmp_path / ".venv").symlink_to(REPO / ".venv")
    done = subprocess.run(
        ["bash", str(copy / "validate.sh"), "windmill"], capture_output=True, text=True, timeout=600
    )
    assert done.returncode != 0
    assert "unknown inputs ['expect_plann']" in done.stdout


def _env(**extra: str) -> dict[str, str]:
    """A Windmill-like environment: the worker clears it, then sets PATH and HOME."""
    env = {"PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin", "HOME": str(Path.home())}
    env.update(extra)
    return env


def run_step(name: str, args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Runs a step as Windmill's bash executor does: `bash main.sh ARGS...` in the job dir."""
    return subprocess.run(
        ["bash", str(STEPS / f"{name}.sh"), *args],
        cwd=cwd,
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def last_line_json(stdout: str) -> dict[str, Any]:
    result = json.loads(stdout.strip().splitlines()[-1])
    assert isinstance(result, dict)
    return result


# --- the real omni CLI, on the example inventory (no server is contacted) ---


def test_inventory_check_step_returns_the_envelope(tmp_path: Path) -> None:
    done = run_step("inventory_check", [str(INVENTORY)], tmp_path)
    assert done.returncode == 0, done.stderr
    envelope = last_line_json(done.stdout)
    assert envelope["omni"] == 1
    assert envelope["command"] == "inventory check"
    assert envelope["status"] == "success"
    assert json.loads((tmp_path / "result.json").read_text()) == envelope


def test_inventory_check_step_reads_omni_inventory_from_the_worker(tmp_path: Path) -> None:
    done = run_step("inventory_check", [], tmp_path, OMNI_INVENTORY=str(INVENTORY))
    assert done.returncode == 0, done.stderr
    assert set(last_line_json(done.stdout)["data"]["hosts"]) == {"dev", "netcup"}


def test_inventory_check_step_fails_with_omnis_exit_status(tmp_path: Path) -> None:
    broken = tmp_path / "inventory"
    shutil.copytree(INVENTORY, broken)
    (broken / "tenants" / "bad-port.yaml").write_text(
        "slug: bad-port\nhost: nowhere\ndomains: [x.example.com]\nimage: medusa-store:1\n"
    )
    job = tmp_path / "job"
    job.mkdir()
    done = run_step("inventory_check", [str(broken)], job)
    assert done.returncode == 2
    envelope = last_line_json(done.stdout)
    assert envelope["status"] == "error"
    assert envelope["errors"][0]["code"].startswith("invalid")
    assert "error[" in done.stderr


def test_step_without_an_inventory_is_refused(tmp_path: Path) -> None:
    done = run_step("inventory_check", [], tmp_path)
    assert done.returncode == 2
    assert "inventory:" in done.stderr
    assert not (tmp_path / "result.json").exists()


def test_tenant_list_step_without_probes(tmp_path: Path) -> None:
    done = run_step("tenant_list", ["true", str(INVENTORY), "none"], tmp_path)
    assert done.returncode == 0, done.stderr
    slugs = {t["slug"] for t in last_line_json(done.stdout)["data"]["tenants"]}
    assert slugs == {p.stem for p in (INVENTORY / "tenants").glob("*.yaml")}


# --- a stub omni: argument passing, quoting, exit status, key handling ---

STUB = """#!{python}
import hashlib, json, os, stat, sys
home = os.environ.get("HOME", "")
key = os.path.join(home, ".ssh", "omni_deploy")
record = {{"argv": sys.argv[1:], "home": home, "env": sorted(os.environ)}}
if os.path.exists(key):
    record["key_mode"] = stat.S_IMODE(os.stat(key).st_mode)
    record["key_sha256"] = hashlib.sha256(open(key, "rb").read()).hexdigest()
with open(os.environ["STUB_RECORD"] + ".tmp", "w") as out:
    json.dump(record, out)
os.replace(os.environ["STUB_RECORD"] + ".tmp", os.environ["STUB_RECORD"])
if os.environ.get("STUB_WAIT"):
    import time
    deadline = time.monotonic() + 60
    while not os.path.exists(os.environ["STUB_WAIT"]) and time.monotonic() < deadline:
        time.sleep(0.05)
code = int(os.environ.get("STUB_EXIT", "0"))
print("progress for people", file=sys.stderr)
print(json.dumps({{"omni": 1, "command": "stub", "status": "error" if code else "success",
                  "changed": False, "steps": [], "data": {{}}, "errors": []}}))
sys.exit(code)
"""


@pytest.fixture
def stub(tmp_path: Path) -> dict[str, str]:
    path = tmp_path / "omni-stub"
    path.write_text(STUB.format(python=sys.executable))
    path.chmod(0o755)
    return {"OMNI_BIN": str(path), "STUB_RECORD": str(tmp_path / "record.json")}


def recorded(stub: dict[str, str]) -> dict[str, Any]:
    data = json.loads(Path(stub["STUB_RECORD"]).read_text())
    assert isinstance(data, dict)
    return data


def test_tenant_create_passes_each_value_as_one_argument(
    tmp_path: Path, stub: dict[str, str]
) -> None:
    slug = "--evil; $(touch pwned) `touch pwned2`"
    args = [
        slug,
        "netcup",
        "a.example.com, b.example.com  c.example.com,--yes,`touch\tpwned3`.x,$(touch${IFS}pwned4)",
        "img:1 x",
        "true",
        "abc123",
        "/inv dir",
        "none",
    ]
    done = run_step("tenant_create", args, tmp_path, **stub)
    assert done.returncode == 0, done.stderr
    assert recorded(stub)["argv"] == [
        "--inventory=/inv dir",
        "--json",
        "tenant",
        "create",
        "--host=netcup",
        "--domain=a.example.com",
        "--domain=b.example.com",
        "--domain=c.example.com",
        "--domain=--yes",
        "--domain=`touch",
        "--domain=pwned3`.x",
        "--domain=$(touch${IFS}pwned4)",
        "--image=img:1 x",
        "--dry-run",
        "--expect-plan=abc123",
        "--",
        slug,
    ]
    assert not list(tmp_path.glob("pwned*"))
    assert last_line_json(done.stdout)["status"] == "success"


@pytest.mark.parametrize(
    ("step", "inputs", "expected"),
    [
        ("tenant_create", ["acme", "", "", "", "false", "", "/inv", "none"], ["tenant", "create"]),
        (
            "tenant_destroy",
            ["acme", "acme", "false", "/inv", "none"],
            ["tenant", "destroy", "--yes"],
        ),
        (
            "tenant_destroy",
            ["acme", "", "true", "/inv", "none"],
            ["tenant", "destroy", "--dry-run"],
        ),
        ("tenant_destroy", ["acme", "other", "", "/inv", "none"], ["tenant", "destroy"]),
        ("hosts_check", ["dev, netcup", "/inv", "none"], ["hosts", "check", "--", "dev", "netcup"]),
        ("hosts_check", ["", "/inv", "none"], ["hosts", "check", "--"]),
        ("tenant_list", ["true", "/inv", "none"], ["tenant", "list", "--no-probe"]),
        ("tenant_list", ["false", "/inv", "none"], ["tenant", "list"]),
        ("tenant_show", ["--yes", "/inv", "none"], ["tenant", "show", "--", "--yes"]),
        ("inventory_check", ["/inv"], ["inventory", "check"]),
    ],
)
def test_step_inputs_become_omni_arguments(
    tmp_path: Path, stub: dict[str, str], step: str, inputs: list[str], expected: list[str]
) -> None:
    """Empty options are left out; `confirm` must repeat the slug to pass --yes."""
    if step in {"tenant_create", "tenant_destroy"}:
        expected = [*expected, "--", "acme"]
    done = run_step(step, inputs, tmp_path, **stub)
    assert done.returncode == 0, done.stderr
    assert recorded(stub)["argv"] == ["--inventory=/inv", "--json", *expected]


@pytest.mark.parametrize("status", [1, 3, 4, 5])
def test_omnis_exit_status_is_the_steps(tmp_path: Path, stub: dict[str, str], status: int) -> None:
    done = run_step(
        "tenant_show", ["acme", "/inv", "none"], tmp_path, STUB_EXIT=str(status), **stub
    )
    assert done.returncode == status
    # Windmill merges stderr into stdout: the envelope must still be the last line.
    assert last_line_json(done.stdout)["status"] == "error"
    assert (tmp_path / "result.json").is_file()


@pytest.mark.parametrize(
    ("step", "inputs", "field"),
    [
        ("tenant_create", ["acme", "", "", "", "yes", "", "/inv", "none"], "dry_run"),
        ("tenant_destroy", ["acme", "acme", "True", "/inv", "none"], "dry_run"),
        ("tenant_list", ["1", "/inv", "none"], "no_probe"),
    ],
)
def test_a_bad_boolean_is_refused_before_omni_runs(
    tmp_path: Path, stub: dict[str, str], step: str, inputs: list[str], field: str
) -> None:
    done = run_step(step, inputs, tmp_path, **stub)
    assert done.returncode == 2
    assert f'error[invalid_input]: {field}: must be "true" or "false"' in done.stderr
    assert not Path(stub["STUB_RECORD"]).exists()


class _VariableApi(http.server.BaseHTTPRequestHandler):
    """Answers GET /api/w/WS/variables/get_value/PATH like Windmill: a JSON string."""

    variables: ClassVar[dict[str, str]] = {}
    seen_auth: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.seen_auth.append(self.headers.get("Authorization", ""))
        prefix = "/api/w/ws1/variables/get_value/"
        if self.path == prefix + "f/omni/redirect":  # to a real key: following it would work
            self.send_response(302)
            self.send_header("Location", prefix + "f/omni/ssh_private_key")
            self.end_headers()
            return
        value = self.variables.get(self.path.removeprefix(prefix))
        if not self.path.startswith(prefix) or value is None:
            self.send_response(404)
            self.end_headers()
            return
        body = json.dumps(value).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def variable_api() -> Iterator[dict[str, str]]:
    _VariableApi.variables = {"f/omni/ssh_private_key": KEY, "f/omni/not_a_key": "hello"}
    _VariableApi.seen_auth = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _VariableApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield {
            "BASE_INTERNAL_URL": f"http://127.0.0.1:{server.server_address[1]}",
            "WM_TOKEN": "job-token-xyz",
            "WM_WORKSPACE": "ws1",
        }
    finally:
        server.shutdown()
        thread.join(timeout=10)


@pytest.mark.parametrize("status", [0, 3])
def test_ssh_key_variable_becomes_a_private_0600_file_removed_afterwards(
    tmp_path: Path, stub: dict[str, str], variable_api: dict[str, str], status: int
) -> None:
    args = ["acme", "/inv", "f/omni/ssh_private_key"]
    done = run_step("tenant_show", args, tmp_path, STUB_EXIT=str(status), **stub, **variable_api)
    assert done.returncode == status, done.stderr
    assert last_line_json(done.stdout)["status"] == ("error" if status else "success")
    seen = recorded(stub)
    assert "WM_TOKEN" not in seen["env"], "omni must not get the job token"
    assert "BASE_INTERNAL_URL" in seen["env"]
    assert seen["key_mode"] == 0o600
    assert seen["key_sha256"] == hashlib.sha256(KEY.encode()).hexdigest()
    home = Path(seen["home"])
    assert home != Path.home()
    assert not home.exists(), "the private HOME with the key must be removed on exit"
    assert _VariableApi.seen_auth == ["Bearer job-token-xyz"]
    for secret in ("c2VjcmV0LWtleS1tYXRlcmlhbA", "job-token-xyz"):
        assert secret not in done.stdout + done.stderr
        assert secret not in " ".join(seen["argv"])


@pytest.mark.parametrize(
    ("variable", "message"),
    [
        ("f/omni/missing", "cannot read Windmill variable f/omni/missing"),
        ("f/omni/not_a_key", "does not hold an SSH private key"),
        ("f/../etc/passwd", "is not a Windmill variable path"),
    ],
)
def test_a_bad_ssh_key_variable_stops_the_step_before_omni(
    tmp_path: Path,
    stub: dict[str, str],
    variable_api: dict[str, str],
    variable: str,
    message: str,
) -> None:
    done = run_step("tenant_show", ["acme", "/inv", variable], tmp_path, **stub, **variable_api)
    assert done.returncode == 2
    assert message in done.stderr
    assert not Path(stub["STUB_RECORD"]).exists()
    assert "hello" not in done.stdout + done.stderr


def test_ssh_key_variable_outside_windmill_is_refused(tmp_path: Path, stub: dict[str, str]) -> None:
    done = run_step("tenant_show", ["acme", "/inv", "f/omni/ssh_private_key"], tmp_path, **stub)
    assert done.returncode == 2
    assert "not running on a Windmill worker" in done.stderr


def _wait_for(path: Path, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, "the step ended early"
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.05)


def test_cancelling_the_step_removes_the_key(
    tmp_path: Path, stub: dict[str, str], variable_api: dict[str, str]
) -> None:
    """Windmill cancels a job with SIGTERM: the runner (exec'd by bash) still cleans up."""
    release = tmp_path / "release"
    proc = subprocess.Popen(
        ["bash", str(STEPS / "tenant_show.sh"), "acme", "/inv", "f/omni/ssh_private_key"],
        cwd=tmp_path,
        env=_env(STUB_WAIT=str(release), **stub, **variable_api),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(Path(stub["STUB_RECORD"]), proc)
        home = Path(recorded(stub)["home"])
        assert (home / ".ssh" / "omni_deploy").is_file()
        proc.send_signal(signal.SIGTERM)
        release.touch()  # lets an orphaned stub end at once if the runner died uncleanly
        out, err = proc.communicate(timeout=60)
    finally:
        release.touch()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 128 + signal.SIGTERM
    assert not home.exists()
    assert not (tmp_path / "result.json").exists()
    assert "c2VjcmV0LWtleS1tYXRlcmlhbA" not in out + err


def test_a_redirect_is_not_followed_with_the_token(
    tmp_path: Path, stub: dict[str, str], variable_api: dict[str, str]
) -> None:
    done = run_step(
        "tenant_show", ["acme", "/inv", "f/omni/redirect"], tmp_path, **stub, **variable_api
    )
    assert done.returncode == 2
    assert "cannot read Windmill variable f/omni/redirect (HTTP 302)" in done.stderr
    assert _VariableApi.seen_auth == ["Bearer job-token-xyz"]
    assert not Path(stub["STUB_RECORD"]).exists()


def test_runner_runs_as_a_module_and_refuses_unknown_arguments(tmp_path: Path) -> None:
    runner = [sys.executable, "-m", "omni.windmill_step"]
    bad = subprocess.run(
        [*runner, "--inventory", str(INVENTORY), "--", "inventory", "check"],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2
    assert "error[invalid_input]: omni-windmill-step: unknown argument '--inventory'" in bad.stderr
    assert bad.stdout == ""
    good = subprocess.run(
        [*runner, f"--inventory={INVENTORY}", "--", "inventory", "check"],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert good.returncode == 0, good.stderr
    assert last_line_json(good.stdout)["command"] == "inventory check"


def test_validate_rejects_a_step_that_does_not_exec_the_runner(
    validation_tools: None, tmp_path: Path
) -> None:
    copy = tmp_path / "windmill_scripts"
    shutil.copytree(REPO / "windmill_scripts", copy)
    step = copy / "f" / "omni" / "tenant_show.sh"
    text = step.read_text().replace(
        "exec omni-windmill-step", "rm -f result.json\nomni-windmill-step"
    )
    step.write_text(text)
    (tmp_path / ".venv").symlink_to(REPO / ".venv")
    done = subprocess.run(
        ["bash", str(copy / "validate.sh"), "windmill"], capture_output=True, text=True, timeout=600
    )
    assert done.returncode != 0
    assert "tenant_show.sh: must end with `exec omni-windmill-step" in done.stdout
    assert "tenant_show.sh: uses result.json" in done.stdout
