"""The Windmill steps in windmill_scripts/ and the runner they call (omni/windmill_step.py).

- ``validate.sh windmill``: shellcheck on inline bash, ``gen_steps.py --check`` (each Python
  step and its ``.script.yaml`` equal what Windmill's own parser infers), ``wmill lint`` and
  ``check_metadata.py`` (tags, imports, approvals, failure handlers, schedules); mutations
  that each check must catch.
- The Python steps run as Windmill runs them (``main(**args)``) against the real ``omni``
  on the example inventory (commands that contact no server), and against a stub ``omni``
  (via ``OMNI_BIN``) to check argv building, exit status and the SSH key handling.
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
import yaml

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


GEN = [sys.executable, str(REPO / "windmill_scripts" / "gen_steps.py")]
NODE_MODULES = (
    Path(os.environ.get("OMNI_TOOLS_CACHE", "/var/cache/omni-tools")) / "npm" / "node_modules"
)
sys.path.insert(0, str(REPO / "windmill_scripts"))
import check_metadata  # noqa: E402
import gen_steps  # noqa: E402


def test_validate_windmill_folder_passes(validation_tools: None) -> None:
    done = subprocess.run(
        ["bash", str(VALIDATE), "windmill"], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    assert "Windmill's own Python parser" in done.stderr
    assert "wmill lint" in done.stderr
    assert "check_metadata.py" in done.stderr


def _copy(tmp_path: Path) -> Path:
    copy = tmp_path / "windmill_scripts"
    shutil.copytree(REPO / "windmill_scripts", copy)
    (tmp_path / ".venv").symlink_to(REPO / ".venv")
    return copy


def _validate(copy: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(copy / "validate.sh"), "windmill"], capture_output=True, text=True,
        timeout=600,
    )


def test_a_schema_that_differs_from_windmills_parser_fails(
    validation_tools: None, tmp_path: Path
) -> None:
    copy = _copy(tmp_path)
    step = copy / "f" / "omni" / "restart.py"
    step.write_text(step.read_text().replace('"app", "redis", "all"', '"app", "redis"'))
    done = _validate(copy)
    assert done.returncode != 0
    assert "f/omni/restart.py: stale" in done.stdout


def test_every_step_schema_is_windmills_own_inference(validation_tools: None) -> None:
    """The committed .script.yaml files are exactly what gen_steps derives from the
    parser's output (validate.sh runs the same --check)."""
    done = subprocess.run([*GEN, str(NODE_MODULES), "--check"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_omni_command_has_a_step() -> None:
    commands = {" ".join(s.command) for s in gen_steps.STEPS}
    assert commands >= {
        "inventory check", "hosts check", "plan", "tenant create", "tenant destroy",
        "tenant list", "tenant show", "tenant credentials", "health-check", "migrate-all",
        "restart", "certs renew", "deploy", "rollback", "releases", "history", "backup run",
        "backup list", "backup verify", "backup restore",
    }


def test_scripts_never_make_windmill_install_a_package() -> None:
    """Windmill infers requirements from imports: only the standard library, never `omni`
    (PyPI's unrelated package); the worker image provides our omni executable."""
    for script in STEPS.rglob("*.py"):
        assert check_metadata.stdlib_only(script) == [], script
        assert "requirements:" not in script.read_text()
    bad = STEPS.parent.parent / "bad.py"
    try:
        bad.write_text("import omni\nimport requests\n")
        problems = check_metadata.stdlib_only(bad)
    finally:
        bad.unlink()
    assert len(problems) == 2 and "imports omni" in problems[0]


def test_every_step_runs_on_the_omni_worker_group() -> None:
    for meta in STEPS.glob("*.script.yaml"):
        assert yaml.safe_load(meta.read_text())["tag"] == "omni", meta


# --- flow and schedule invariants (check_metadata.py on mutated copies) ---


def _problems(tmp_path: Path, mutate: Any) -> list[str]:
    copy = tmp_path / "ws"
    shutil.copytree(REPO / "windmill_scripts", copy)
    mutate(copy / "f" / "omni")
    sigs = {"f/omni/" + str(p.relative_to(copy / "f" / "omni")): [
        {"name": n, "default": None} for n in ("what", "checked", "failed")]
        for p in (copy / "f" / "omni").rglob("*.sh")}
    return check_metadata.check_all(copy, sigs)


def _edit(path: Path, edit: Any) -> None:
    data = yaml.safe_load(path.read_text())
    edit(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_committed_flows_and_schedules_pass_the_invariants(tmp_path: Path) -> None:
    assert _problems(tmp_path, lambda folder: None) == []


@pytest.mark.parametrize("flow", ["onboard_tenant", "rollout"])
def test_removing_the_approval_fails(tmp_path: Path, flow: str) -> None:
    def drop(folder: Path) -> None:
        _edit(folder / f"{flow}.flow" / "flow.yaml", lambda d: d["value"].__setitem__(
            "modules", [m for m in d["value"]["modules"] if m["id"] != "approval"]))
    assert any("without an approval" in p for p in _problems(tmp_path, drop))


def test_self_approval_or_no_group_fails(tmp_path: Path) -> None:
    def allow_self(folder: Path) -> None:
        def edit(d: dict[str, Any]) -> None:
            approval = next(m for m in d["value"]["modules"] if m["id"] == "approval")
            approval["suspend"]["self_approval_disabled"] = False
        _edit(folder / "onboard_tenant.flow" / "flow.yaml", edit)
    assert any("not the one who started" in p for p in _problems(tmp_path, allow_self))


def test_apply_without_the_approved_fingerprint_fails(tmp_path: Path) -> None:
    def drop(folder: Path) -> None:
        def edit(d: dict[str, Any]) -> None:
            create = next(m for m in d["value"]["modules"] if m["id"] == "create")
            del create["value"]["input_transforms"]["expect_plan"]
        _edit(folder / "onboard_tenant.flow" / "flow.yaml", edit)
    assert any("expect_plan" in p for p in _problems(tmp_path, drop))


def test_a_missing_failure_handler_fails(tmp_path: Path) -> None:
    def drop(folder: Path) -> None:
        _edit(folder / "backup_nightly.flow" / "flow.yaml",
              lambda d: d["value"].pop("failure_module"))
    assert any("failure_module" in p for p in _problems(tmp_path, drop))


@pytest.mark.parametrize(("cron", "path", "message"), [
    ("*/5 * * * *", "f/omni/health_sweep", "6 fields"),
    ("0 61 * * * *", "f/omni/health_sweep", "out of range"),
    ("0 */5 * * * *", "f/omni/no_such_flow", "is not a flow here"),
])
def test_a_bad_schedule_fails(tmp_path: Path, cron: str, path: str, message: str) -> None:
    def edit(folder: Path) -> None:
        _edit(folder / "health_sweep.schedule.yaml", lambda d: d.update(
            schedule=cron, script_path=path))
    assert any(message in p for p in _problems(tmp_path, edit))


def test_a_schedule_without_paging_fails(tmp_path: Path) -> None:
    def edit(folder: Path) -> None:
        _edit(folder / "certs_renew_daily.schedule.yaml", lambda d: d.pop("on_failure"))
    assert any("on_failure must be" in p for p in _problems(tmp_path, edit))


def test_every_flow_has_a_schedule_or_is_started_by_people() -> None:
    schedules = {yaml.safe_load(p.read_text())["script_path"]
                 for p in STEPS.glob("*.schedule.yaml")}
    assert schedules == {"f/omni/health_sweep", "f/omni/backup_nightly",
                         "f/omni/backup_verify_monthly", "f/omni/certs_renew_daily"}


# --- the steps, run as Windmill runs them: main(**args) in the job directory ---

RUN_MAIN = """
import json, runpy, sys
main = runpy.run_path(sys.argv[1])["main"]
try:
    result = main(**json.loads(sys.argv[2]))
except Exception as exc:
    print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
    sys.exit(1)
print("RESULT " + json.dumps(result))
"""


def _env(**extra: str) -> dict[str, str]:
    """A Windmill-like environment: the worker clears it, then sets PATH and HOME."""
    env = {"PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin", "HOME": str(Path.home())}
    env.update(extra)
    return env


def run_step(name: str, args: dict[str, Any], cwd: Path, **env: str
             ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", RUN_MAIN, str(STEPS / f"{name}.py"), json.dumps(args)],
        cwd=cwd, env=_env(**env), capture_output=True, text=True, timeout=120,
    )


def result_of(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("RESULT "))
    result = json.loads(line.removeprefix("RESULT "))
    assert isinstance(result, dict)
    return result


def last_line_json(stdout: str) -> dict[str, Any]:
    result = json.loads(stdout.strip().splitlines()[-1])
    assert isinstance(result, dict)
    return result


def test_inventory_check_step_returns_the_envelope(tmp_path: Path) -> None:
    done = run_step("inventory_check", {"inventory": str(INVENTORY),
                                        "ssh_key_variable": "none"}, tmp_path)
    assert done.returncode == 0, done.stderr
    envelope = result_of(done)
    assert envelope["omni"] == 1 and envelope["command"] == "inventory check"
    assert envelope["status"] == "success"


def test_inventory_check_step_reads_omni_inventory_from_the_worker(tmp_path: Path) -> None:
    done = run_step("inventory_check", {"ssh_key_variable": "none"}, tmp_path,
                    OMNI_INVENTORY=str(INVENTORY))
    assert done.returncode == 0, done.stderr
    assert set(result_of(done)["data"]["hosts"]) == {"dev", "netcup"}


def test_a_failing_command_fails_the_step_with_omnis_error_lines(tmp_path: Path) -> None:
    broken = tmp_path / "inventory"
    shutil.copytree(INVENTORY, broken)
    (broken / "tenants" / "bad-host.yaml").write_text(
        "slug: bad-host\nhost: nowhere\ndomains: [x.example.com]\nimage: medusa-store:1\n"
    )
    done = run_step("inventory_check", {"inventory": str(broken), "ssh_key_variable": "none"},
                    tmp_path)
    assert done.returncode == 1
    assert "RuntimeError: omni inventory check failed (exit 2): error[" in done.stderr


def test_tenant_list_step_without_probes(tmp_path: Path) -> None:
    done = run_step("tenant_list", {"no_probe": True, "inventory": str(INVENTORY),
                                    "ssh_key_variable": "none"}, tmp_path)
    assert done.returncode == 0, done.stderr
    slugs = {t["slug"] for t in result_of(done)["data"]["tenants"]}
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


@pytest.mark.parametrize(("name", "args", "argv"), [
    ("tenant_create", {"slug": "--evil; $(touch pwned)", "host": "dev",
                       "domains": ["a.example.com", "$(touch${IFS}pwned4)"], "image": "m:1",
                       "dry_run": True},
     ["tenant", "create", "--host=dev", "--domain=a.example.com",
      "--domain=$(touch${IFS}pwned4)", "--image=m:1", "--dry-run", "--",
      "--evil; $(touch pwned)"]),
    ("tenant_create", {"slug": "acme", "dry_run": True, "expect_plan": "abc", "wait": 5.0},
     ["tenant", "create", "--dry-run", "--expect-plan=abc", "--wait=5.0", "--", "acme"]),
    ("restart", {"every": True, "service": "redis", "parallel": 2, "keep_going": True},
     ["restart", "--all", "--service=redis", "--parallel=2", "--keep-going", "--"]),
    ("deploy", {"image": "m:2", "slugs": ["a", "b"], "dry_run": True, "expect_plan": "f1"},
     ["deploy", "--image=m:2", "--dry-run", "--expect-plan=f1", "--", "a", "b"]),
    ("rollback", {"slug": "a", "restore_db": False, "dry_run": True},
     ["rollback", "--no-restore-db", "--dry-run", "--", "a"]),
    ("tenant_destroy", {"slug": "a", "confirm": "a", "dry_run": True},
     ["tenant", "destroy", "--yes", "--dry-run", "--", "a"]),
    ("migrate_all", {"tenants": ["a"], "host": "dev", "expect_plan": "f3"},
     ["migrate-all", "--tenant=a", "--host=dev", "--expect-plan=f3"]),
    ("certs_renew", {"expect_plan": "f4"}, ["certs", "renew", "--expect-plan=f4", "--"]),
    ("backup_restore", {"slug": "a", "confirm": "a", "expect_plan": "f5"},
     ["backup", "restore", "--yes", "--expect-plan=f5", "--", "a"]),
    ("plan", {"slugs": ["a"]}, ["plan", "--format=markdown", "--", "a"]),
    ("history", {}, ["history", "--"]),
    ("backup_verify", {"every": True, "read_data_subset": 5.0},
     ["backup", "verify", "--all", "--read-data-subset=5.0", "--"]),
])
def test_step_inputs_become_omni_arguments(
    tmp_path: Path, stub: dict[str, str], name: str, args: dict[str, Any], argv: list[str]
) -> None:
    done = run_step(name, {**args, "inventory": "/inv", "ssh_key_variable": "none"},
                    tmp_path, **stub)
    assert done.returncode == 0, done.stderr
    assert recorded(stub)["argv"] == ["--inventory=/inv", "--json", *argv]
    assert result_of(done)["command"] == "stub"
    assert not list(tmp_path.glob("pwned*"))


def test_a_wrong_confirmation_is_refused_before_omni_runs(
    tmp_path: Path, stub: dict[str, str]
) -> None:
    done = run_step("tenant_destroy", {"slug": "a", "confirm": "b", "dry_run": True,
                                       "inventory": "/inv",
                                       "ssh_key_variable": "none"}, tmp_path, **stub)
    assert done.returncode == 1
    assert "confirm: type the slug (a)" in done.stderr
    assert not Path(stub["STUB_RECORD"]).exists()


@pytest.mark.parametrize("status", [1, 3, 4, 5])
def test_omnis_failure_fails_the_step(tmp_path: Path, stub: dict[str, str], status: int) -> None:
    done = run_step("tenant_show", {"slug": "a", "inventory": "/inv",
                                    "ssh_key_variable": "none"}, tmp_path,
                    STUB_EXIT=str(status), **stub)
    assert done.returncode == 1
    assert f"failed (exit {status})" in done.stderr


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
    args = {"slug": "acme", "inventory": "/inv", "ssh_key_variable": "f/omni/ssh_private_key"}
    done = run_step("tenant_show", args, tmp_path, STUB_EXIT=str(status), **stub,
                    **variable_api)
    assert done.returncode == (1 if status else 0), done.stderr
    seen = recorded(stub)
    assert "WM_TOKEN" not in seen["env"], "omni must not get the job token"
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
        ("f/omni/redirect", "cannot read Windmill variable f/omni/redirect (HTTP 302)"),
    ],
)
def test_a_bad_ssh_key_variable_stops_the_step_before_omni(
    tmp_path: Path, stub: dict[str, str], variable_api: dict[str, str], variable: str,
    message: str,
) -> None:
    done = run_step("tenant_show", {"slug": "acme", "inventory": "/inv",
                                    "ssh_key_variable": variable}, tmp_path, **stub,
                    **variable_api)
    assert done.returncode == 1
    assert message in done.stderr
    assert not Path(stub["STUB_RECORD"]).exists()
    assert "hello" not in done.stdout + done.stderr


def test_ssh_key_variable_outside_windmill_is_refused(tmp_path: Path, stub: dict[str, str]) -> None:
    done = run_step("tenant_show", {"slug": "acme", "inventory": "/inv"}, tmp_path, **stub)
    assert done.returncode == 1
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
    """Windmill cancels a job with SIGTERM: the step passes it on, the runner cleans up."""
    release = tmp_path / "release"
    args = {"slug": "acme", "inventory": "/inv", "ssh_key_variable": "f/omni/ssh_private_key"}
    proc = subprocess.Popen(
        [sys.executable, "-c", RUN_MAIN, str(STEPS / "tenant_show.py"), json.dumps(args)],
        cwd=tmp_path, env=_env(STUB_WAIT=str(release), **stub, **variable_api),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        _wait_for(Path(stub["STUB_RECORD"]), proc)
        home = Path(recorded(stub)["home"])
        assert (home / ".ssh" / "omni_deploy").is_file()
        proc.send_signal(signal.SIGTERM)
        release.touch()
        out, err = proc.communicate(timeout=60)
    finally:
        release.touch()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode != 0
    assert not home.exists()
    assert "c2VjcmV0LWtleS1tYXRlcmlhbA" not in out + err


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



def test_a_flow_input_the_step_does_not_have_fails(tmp_path: Path) -> None:
    def edit(folder: Path) -> None:
        flow = folder / "onboard_tenant.flow" / "flow.yaml"
        flow.write_text(flow.read_text().replace("expect_plan:", "expect_plann:", 1))
    assert any("unknown inputs ['expect_plann']" in p for p in _problems(tmp_path, edit))


# --- recovery, timeouts, fingerprints from this flow's plan, git_ref ---


def _drop_module_key(flow: str, module_id: str, key: str) -> Any:
    def mutate(folder: Path) -> None:
        def edit(d: dict[str, Any]) -> None:
            found = [m for m in check_metadata.walk_modules(d["value"]["modules"])
                     if m["id"] == module_id]
            assert found, module_id
            found[0].pop(key)
        _edit(folder / f"{flow}.flow" / "flow.yaml", edit)
    return mutate


def test_an_unscheduled_flow_without_its_recovery_step_fails(tmp_path: Path) -> None:
    def drop(folder: Path) -> None:
        _edit(folder / "rollout.flow" / "flow.yaml", lambda d: d["value"].__setitem__(
            "modules", [m for m in d["value"]["modules"] if m["id"] != "recovery"]))
    assert any("rollout.flow/flow.yaml: needs a recovery handler" in p
               for p in _problems(tmp_path, drop))


def test_a_schedule_without_on_recovery_leaves_its_flow_without_recovery(
    tmp_path: Path
) -> None:
    def drop(folder: Path) -> None:
        _edit(folder / "health_sweep.schedule.yaml", lambda d: d.pop("on_recovery"))
    problems = _problems(tmp_path, drop)
    assert any("on_recovery must be" in p for p in problems)
    assert any("health_sweep.flow/flow.yaml: needs a recovery handler" in p for p in problems)


@pytest.mark.parametrize(("flow", "module"), [
    ("rollout", "deploy_tenant"), ("health_sweep", "check_tenant"), ("rollout", "verdict"),
])
def test_a_step_without_a_timeout_fails(tmp_path: Path, flow: str, module: str) -> None:
    problems = _problems(tmp_path, _drop_module_key(flow, module, "timeout"))
    assert any(f"step {module}: needs a timeout" in p for p in problems)


def test_a_failure_handler_without_a_timeout_fails(tmp_path: Path) -> None:
    def drop(folder: Path) -> None:
        _edit(folder / "backup_nightly.flow" / "flow.yaml",
              lambda d: d["value"]["failure_module"].pop("timeout"))
    assert any("failure_module needs a timeout" in p for p in _problems(tmp_path, drop))


@pytest.mark.parametrize(("flow", "module"), [
    ("certs_renew_daily", "renew"), ("migrate_all_fleet", "migrate_tenant"),
    ("rollout", "rollback_tenant"),
])
def test_an_apply_whose_fingerprint_is_not_from_this_flows_plan_fails(
    tmp_path: Path, flow: str, module: str
) -> None:
    def forge(folder: Path) -> None:
        def edit(d: dict[str, Any]) -> None:
            step = next(m for m in check_metadata.walk_modules(d["value"]["modules"])
                        if m["id"] == module)
            step["value"]["input_transforms"]["expect_plan"] = {
                "type": "javascript", "expr": "flow_input.fingerprint"}
        _edit(folder / f"{flow}.flow" / "flow.yaml", edit)
    assert any(f"step {module}: applies" in p and "expect_plan" in p
               for p in _problems(tmp_path, forge))


@pytest.mark.parametrize(("flow", "module"), [
    ("onboard_tenant", "create"), ("rollout", "deploy_tenant"), ("rollout", "rollback_tenant"),
])
def test_an_apply_that_may_write_a_tenant_file_without_git_ref_fails(
    tmp_path: Path, flow: str, module: str
) -> None:
    def drop(folder: Path) -> None:
        def edit(d: dict[str, Any]) -> None:
            step = next(m for m in check_metadata.walk_modules(d["value"]["modules"])
                        if m["id"] == module)
            del step["value"]["input_transforms"]["git_ref"]
        _edit(folder / f"{flow}.flow" / "flow.yaml", edit)
    assert any(f"step {module}: applies" in p and "without git_ref" in p
               for p in _problems(tmp_path, drop))


def test_every_host_changing_step_needs_an_approved_plan_or_says_why_not() -> None:
    changing = {s.name for s in gen_steps.STEPS if s.changes_hosts}
    assert gen_steps.NEEDS_APPROVED_PLAN | set(gen_steps.NO_PLAN_ENFORCEMENT) == changing
    assert not gen_steps.NEEDS_APPROVED_PLAN & set(gen_steps.NO_PLAN_ENFORCEMENT)
    for name in gen_steps.NEEDS_APPROVED_PLAN:
        params = {p.name for p in next(s for s in gen_steps.STEPS if s.name == name).params}
        assert {"dry_run", "expect_plan"} <= params, name
    assert set(gen_steps.PROPOSES_CHANGE) <= gen_steps.NEEDS_APPROVED_PLAN
    assert {f"f/omni/{n}" for n in gen_steps.PROPOSES_CHANGE} == check_metadata.GIT_REF_STEPS
