"""Each Windmill flow walked as Windmill would (tests/flow_walk.py): every module in order,
every input transform evaluated by node, approvals checked, loops and branches followed.

The steps are the generated ones, run by calling their ``main`` with the evaluated inputs;
``omni-windmill-step`` is replaced (``OMNI_WINDMILL_STEP``) by a stub that answers like omni
(plans with fingerprints, applies that check them, failures on demand) and records each
argv, and the inventory is a local git repository at ``git_ref``. Inline steps run for real
(``approval.py``'s ``main``, ``verdict.sh`` under bash). ``f/omni/page`` is recorded, not
sent. The lab test walks ``health_sweep`` with the real omni against the lab's hosts.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import lab as labmod
from tests.flow_walk import Approver, Run, Walker

REPO = Path(__file__).resolve().parent.parent
FOLDER = REPO / "windmill_scripts" / "f" / "omni"
FLOWS = sorted(p.parent.name.removesuffix(".flow") for p in FOLDER.glob("*.flow/flow.yaml"))
APPROVER = Approver("alice", ("omni-approvers",))

# Answers like `omni --json ...` for the flows' commands. Env: STUB_LOG (argv per line),
# STUB_TENANTS (tenant list), STUB_FAIL ("COMMAND:SLUG" pairs that fail when applied),
# STUB_UNCHANGED (dry runs plan nothing).
STUB = r'''#!{python}
import json, os, re, sys
argv = sys.argv[sys.argv.index("--") + 1:]
inventory = [a for a in sys.argv if a.startswith("--inventory=")][0].split("=", 1)[1]
with open(os.environ["STUB_LOG"], "a") as log:
    log.write(json.dumps({{"argv": argv, "inventory": inventory}}) + "\n")
words = [a for a in argv if not a.startswith("-")]
command = " ".join(words[:2]) if words[0] in ("tenant", "certs", "backup") else words[0]
slugs = [a for a in argv[argv.index("--") + 1:]] if "--" in argv else []
slugs += [a.split("=", 1)[1] for a in argv if a.startswith("--tenant=")]
label = command.replace(" ", "-") + ":" + ",".join(slugs)
fingerprint = "fp-" + re.sub(r"[^a-z0-9]+", "-", label)
failing = os.environ.get("STUB_FAIL", "").split()
def envelope(data, changed=False, steps=()):
    print(json.dumps({{"omni": 1, "command": command, "status": "success",
                      "changed": changed, "steps": list(steps), "data": data, "errors": []}}))
if command == "tenant list":
    envelope({{"tenants": [{{"slug": s}} for s in os.environ.get("STUB_TENANTS", "").split()]}})
    sys.exit(0)
if command == "health-check":
    if any(f"health-check:{{s}}" in failing for s in slugs):
        print(f"error[check_failed]: {{slugs[0]}}: unhealthy", file=sys.stderr)
        sys.exit(1)
    envelope({{"tenants": [{{"tenant": s, "status": "ok"}} for s in slugs]}})
    sys.exit(0)
if command == "plan":
    if any(a.startswith("--expect-plan=") and a != "--expect-plan=fleet-fp" for a in argv):
        print("error[invalid_input]: --expect-plan: the fleet plan changed", file=sys.stderr)
        sys.exit(2)
    envelope({{"fleet_fingerprint": "fleet-fp", "markdown": "plan"}})
    sys.exit(0)
expect = [a.split("=", 1)[1] for a in argv if a.startswith("--expect-plan=")]
if "--dry-run" in argv:
    changed = not os.environ.get("STUB_UNCHANGED")
    steps = [{{"verb": "create", "resource": "r", "summary": f"{{label}}", "diff": None}}] \
        if changed else []
    envelope({{"plan_fingerprint": fingerprint, "dry_run": True}}, changed, steps)
    sys.exit(0)
if expect and expect[0] != fingerprint:
    print(f"error[invalid_input]: --expect-plan: the plan changed", file=sys.stderr)
    sys.exit(2)
if any(f"{{command}}:{{s}}" in failing for s in slugs):
    print(f"error[step_failed]: {{slugs[0]}}: failed", file=sys.stderr)
    sys.exit(3)
envelope({{"applied": label, "plan_fingerprint": expect[0] if expect else None}}, True)
'''


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def load(path: Path, name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def bash_order(script: Path) -> list[str]:
    """The positional order of a bash step's inputs (``name="$N"`` / ``"${N:-}"``)."""
    found = re.findall(r'^(\w+)="\$\{?(\d+)', script.read_text(), re.M)
    return [name for name, _ in sorted(found, key=lambda f: int(f[1]))]


def step_runner(folder: Path, pages: list[dict[str, Any]], *,
                page: Callable[[dict[str, Any]], Any] | None = None
                ) -> Callable[[str, dict[str, Any], dict[str, Any]], Any]:
    """Runs a module as Windmill would: a script path's ``main(**args)``, an inline Python
    file's ``main(**args)``, an inline bash file with its inputs as positional arguments."""
    def run(runs: str, args: dict[str, Any], module: dict[str, Any]) -> Any:
        if runs == "f/omni/page":
            pages.append(args)
            return page(args) if page else {"sent": args}
        if runs.startswith("f/"):
            main = load(folder.parent.parent / f"{runs}.py", runs.replace("/", "_")).main
            return main(**args)
        path = Path(runs)
        if path.suffix == ".py":
            return load(path, f"inline_{path.stem}").main(**args)
        done = subprocess.run(["bash", str(path), *(str(args[n]) for n in bash_order(path))],
                              capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(done.stderr.strip() or f"exit {done.returncode}")
        return done.stdout.strip()
    return run


class World:
    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        work = tmp_path / "work"
        (work / "inventory" / "tenants").mkdir(parents=True)
        git(work, "init", "-q", "-b", "main")
        (work / "inventory" / "hosts.yaml").write_text("version: 1\n")
        git(work, "add", ".")
        git(work, "commit", "-qm", "inventory")
        self.commit = git(work, "rev-parse", "HEAD")
        bare = tmp_path / "origin.git"
        git(tmp_path, "clone", "-q", "--bare", str(work), str(bare))
        stub = tmp_path / "omni-step-stub"
        stub.write_text(STUB.format(python=sys.executable))
        stub.chmod(0o755)
        self.log = tmp_path / "argv.jsonl"
        (tmp_path / "tmp").mkdir()
        for name, value in {"OMNI_WINDMILL_STEP": str(stub), "OMNI_INVENTORY_REPO": str(bare),
                            "STUB_LOG": str(self.log), "TMPDIR": str(tmp_path / "tmp"),
                            "STUB_TENANTS": "", "STUB_FAIL": ""}.items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("STUB_UNCHANGED", raising=False)
        monkeypatch.setattr(tempfile, "tempdir", None)
        self.pages: list[dict[str, Any]] = []
        self.variables = {"$var:f/omni/inventory_path": "/srv/omni/inventory",
                          "$res:f/omni/pager": {"url": "http://127.0.0.1:9/", "routing_key": "k"}}

    def walk(self, flow: str, flow_input: dict[str, Any], *, folder: Path = FOLDER,
             approvers: list[Approver] | None = None) -> Run:
        walker = Walker(folder / f"{flow}.flow" / "flow.yaml",
                        step_runner(folder, self.pages), variables=self.variables,
                        started_by="bob", approvers=[APPROVER] if approvers is None
                        else approvers)
        return walker.walk(flow_input)

    def argvs(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        return [json.loads(line)["argv"] for line in self.log.read_text().splitlines()]


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    return World(tmp_path, monkeypatch)


def ids(run: Run) -> list[str]:
    return [c.module_id for c in run.calls]


# --- onboard_tenant -------------------------------------------------------------------------

def onboard_input(world: World) -> dict[str, Any]:
    return {"slug": "acme", "host": "dev", "domains": ["shop.acme.test"], "image": "m:1",
            "git_ref": world.commit}


def test_onboarding_plans_waits_for_another_approver_then_applies_that_plan(
    world: World
) -> None:
    run = world.walk("onboard_tenant", onboard_input(world))
    assert run.status == "success", run.error
    assert ids(run) == ["plan", "approval", "create", "health", "recovery"]
    assert run.suspended_at == ["approval"]
    assert world.argvs() == [
        ["tenant", "create", "--host=dev", "--domain=shop.acme.test", "--image=m:1",
         "--dry-run", "--", "acme"],
        ["tenant", "create", "--host=dev", "--domain=shop.acme.test", "--image=m:1",
         "--expect-plan=fp-tenant-create-acme", "--", "acme"],
        ["health-check", "--", "acme"],
    ]
    for call in run.calls:
        if call.runs.startswith("f/omni/") and call.runs != "f/omni/page":
            assert call.args["git_ref"] == world.commit, call.module_id
    page = run.results["approval"]["markdown"]
    assert "fp-tenant-create-acme" in page and "tenant-create:acme" in page
    assert world.pages[-1]["event_action"] == "resolve"


@pytest.mark.parametrize("approvers", [
    [],
    [Approver("bob", ("omni-approvers",))],  # the one who started it
    [Approver("carol", ("omni-operators",))],  # not an approver
    [Approver("dave", ("omni-approvers",), signed_in=False)],
], ids=["nobody", "self", "wrong-group", "anonymous"])
def test_without_a_qualifying_approval_nothing_is_applied(
    world: World, approvers: list[Approver]
) -> None:
    run = world.walk("onboard_tenant", onboard_input(world), approvers=approvers)
    assert run.status == "cancelled"
    assert ids(run) == ["plan", "approval"]
    assert len(world.argvs()) == 1 and "--dry-run" in world.argvs()[0]
    assert len(run.refused_approvals) == len(approvers)


def test_a_tenant_already_in_sync_stops_after_the_plan(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STUB_UNCHANGED", "1")
    run = world.walk("onboard_tenant", onboard_input(world))
    assert run.status == "success"
    assert ids(run) == ["plan"]


def test_removing_the_suspend_step_lets_the_apply_run_unapproved(
    world: World, tmp_path: Path
) -> None:
    """What the approval tests above would catch: the same walk with the suspend removed
    applies with nobody's approval."""
    copy = tmp_path / "ws"
    shutil.copytree(FOLDER, copy / "f" / "omni")
    flow_yaml = copy / "f" / "omni" / "onboard_tenant.flow" / "flow.yaml"
    flow = yaml.safe_load(flow_yaml.read_text())
    for module in flow["value"]["modules"]:
        module.pop("suspend", None)
    flow_yaml.write_text(yaml.safe_dump(flow))
    run = world.walk("onboard_tenant", onboard_input(world), folder=copy / "f" / "omni",
                     approvers=[])
    assert run.status == "success"
    assert "create" in ids(run)


# --- rollout ----------------------------------------------------------------------------

def rollout_input(world: World, tenants: list[str]) -> dict[str, Any]:
    return {"tenants": tenants, "image": "m:2", "git_ref": world.commit,
            "expect_fleet_plan": "fleet-fp"}


def test_a_rollout_deploys_each_planned_tenant_with_its_fingerprint(world: World) -> None:
    run = world.walk("rollout", rollout_input(world, ["a", "b"]))
    assert run.status == "success", run.error
    assert ids(run) == ["gate", "plan_tenant", "plan_tenant", "plan_ok", "approval",
                        "deploy_tenant", "deploy_tenant", "verdict", "recovery"]
    assert run.parallelism == {"plan": 4, "deploy": 2, "rollback_failed": 2}
    applied = [a for a in world.argvs() if a[0] == "deploy" and "--dry-run" not in a]
    assert applied == [["deploy", "--image=m:2", "--expect-plan=fp-deploy-a", "--", "a"],
                       ["deploy", "--image=m:2", "--expect-plan=fp-deploy-b", "--", "b"]]
    assert world.argvs()[0] == ["plan", "--expect-plan=fleet-fp", "--"]


def test_a_failed_deploy_is_rolled_back_and_pages(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STUB_FAIL", "deploy:b")
    run = world.walk("rollout", rollout_input(world, ["a", "b", "c"]))
    assert run.status == "failure"
    assert run.error and run.error["step_id"] == "verdict"
    assert "failed for: b" in run.error["message"]
    rollbacks = [a for a in world.argvs() if a[0] == "rollback"]
    assert rollbacks == [["rollback", "--dry-run", "--", "b"],
                         ["rollback", "--expect-plan=fp-rollback-b", "--", "b"]]
    assert "recovery" not in ids(run)
    failure = world.pages[-1]
    assert failure["dedup_key"] == "f/omni/rollout"
    assert "omni rollout failed at step verdict" in failure["summary"]


def test_a_stale_fleet_plan_stops_the_rollout_before_any_plan(world: World) -> None:
    flow_input = rollout_input(world, ["a"])
    flow_input["expect_fleet_plan"] = "reviewed-long-ago"
    run = world.walk("rollout", flow_input)
    assert run.status == "failure"
    assert run.error and run.error["step_id"] == "gate"
    assert "the fleet plan changed" in run.error["message"]
    assert [a[0] for a in world.argvs()] == ["plan", "plan"], "the gate, retried once"
    assert ids(run) == ["gate", "gate", "failure"]


# --- unattended flows ---------------------------------------------------------------------

def test_migrations_fan_out_and_apply_exactly_what_each_tenant_planned(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STUB_TENANTS", "a b")
    run = world.walk("migrate_all_fleet", {})
    assert run.status == "success", run.error
    assert world.argvs()[1:] == [
        ["migrate-all", "--tenant=a", "--dry-run"],
        ["migrate-all", "--tenant=a", "--expect-plan=fp-migrate-all-a"],
        ["migrate-all", "--tenant=b", "--dry-run"],
        ["migrate-all", "--tenant=b", "--expect-plan=fp-migrate-all-b"],
    ]
    assert run.parallelism == {"migrate": 2}
    assert ids(run)[-1] == "recovery"


def test_certificates_renew_the_plan_of_the_same_run(world: World) -> None:
    run = world.walk("certs_renew_daily", {})
    assert run.status == "success", run.error
    assert world.argvs() == [["certs", "renew", "--dry-run", "--"],
                             ["certs", "renew", "--expect-plan=fp-certs-renew-", "--"]]
    assert "recovery" not in ids(run), "the schedule's on_recovery resolves instead"


def test_the_health_sweep_names_every_unhealthy_tenant(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STUB_TENANTS", "a b c")
    monkeypatch.setenv("STUB_FAIL", "health-check:a health-check:c")
    run = world.walk("health_sweep", {})
    assert run.status == "failure"
    assert ids(run).count("check_tenant") == 3 + 2, "each failing check retried once"
    assert run.error and "failed for: a c" in run.error["message"]
    assert world.pages[-1]["dedup_key"] == "f/omni/health_sweep"


@pytest.mark.parametrize("flow", FLOWS)
def test_every_flow_walks_to_its_end(
    flow: str, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every input transform of every module evaluates (node) and every step accepts its
    inputs, on a run where everything works."""
    monkeypatch.setenv("STUB_TENANTS", "a b")
    flow_input = {"onboard_tenant": onboard_input(world),
                  "rollout": rollout_input(world, ["a", "b"])}.get(flow, {})
    run = world.walk(flow, flow_input)
    assert run.status == "success", run.error
    assert world.argvs(), "omni ran"
    last = ids(run)[-1]
    scheduled = {yaml.safe_load(p.read_text())["script_path"]
                 for p in FOLDER.glob("*.schedule.yaml")}
    assert last == "recovery" or f"f/omni/{flow}" in scheduled


@pytest.mark.parametrize("flow", FLOWS)
def test_a_failing_step_runs_the_failure_handler(
    flow: str, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMNI_WINDMILL_STEP", "/nonexistent/omni-windmill-step")
    flow_input = {"onboard_tenant": onboard_input(world),
                  "rollout": rollout_input(world, ["a"])}.get(flow, {})
    run = world.walk(flow, flow_input)
    assert run.status == "failure"
    assert run.calls[-1].module_id == "failure"
    assert world.pages[-1]["dedup_key"] == f"f/omni/{flow}"
    assert world.pages[-1]["error"] == run.error


# --- the lab: health_sweep with the real omni -------------------------------------------

@pytest.fixture
def lab_inventory(tmp_path: Path) -> Path:
    """A copy of the lab's hosts.yaml with no tenant. Keys this checkout's Host model does
    not know yet (the lab may be newer than this branch) are dropped."""
    source = labmod.inventory_dir() / "hosts.yaml"
    if not source.is_file():
        message = f"lab inventory {source} not found: run `make lab`"
        if labmod.lab_required():
            pytest.fail(message)
        pytest.skip(message)
    from omni.inventory.models import Host

    raw = yaml.safe_load(source.read_text())
    for host in raw["hosts"].values():
        for key in set(host) - set(Host.model_fields):
            del host[key]
    inventory = tmp_path / "inventory"
    (inventory / "tenants").mkdir(parents=True)
    (inventory / "hosts.yaml").write_text(yaml.safe_dump(raw))
    return inventory


@pytest.mark.lab
def test_health_sweep_against_the_lab(
    lab_inventory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The read-only flow end to end: real steps, the real omni-windmill-step and omni, the
    lab's hosts over SSH. A tenant whose file exists but which was never created on its
    host is found unhealthy, named by the verdict, and paged; with no tenant the sweep
    passes."""
    inventory = lab_inventory
    monkeypatch.chdir(inventory.parent)  # the runner writes ./result.json, as on a worker
    runner = Path(sys.executable).parent / "omni-windmill-step"
    assert runner.exists()
    monkeypatch.setenv("OMNI_WINDMILL_STEP", str(runner))
    pages: list[dict[str, Any]] = []
    variables = {"$var:f/omni/inventory_path": str(inventory),
                 "$res:f/omni/pager": {"url": "http://127.0.0.1:9/", "routing_key": "k"}}

    def walk() -> Run:
        run_step = step_runner(FOLDER, pages)

        def no_key(runs: str, args: dict[str, Any], module: dict[str, Any]) -> Any:
            if "ssh_key_variable" in args:  # the lab's identity file, named by hosts.yaml
                args = {**args, "ssh_key_variable": "none"}
            return run_step(runs, args, module)

        return Walker(FOLDER / "health_sweep.flow" / "flow.yaml", no_key,
                      variables=variables).walk({})

    empty = walk()
    assert empty.status == "success", empty.error
    assert empty.results["list_tenants"]["data"]["tenants"] == []
    assert "0 tenant(s); all ok" in empty.results["verdict"]

    (inventory / "tenants" / "walk-ghost.yaml").write_text(
        "slug: walk-ghost\nhost: dev\ndomains:\n  - walk-ghost.lab.test\n"
        "image: omni-lab/standin:1\napp_port: 9197\nredis_port: 6597\n")
    ghost = walk()
    assert ghost.status == "failure"
    assert [c.module_id for c in ghost.calls].count("check_tenant") == 2, "retried once"
    assert ghost.error and ghost.error["step_id"] == "verdict"
    assert "failed for: walk-ghost" in ghost.error["message"]
    reason = ghost.results["check_tenants"][0]["error"]["message"]
    assert "omni health-check failed" in reason
    assert "walk-ghost@dev" in reason and "never created there" in reason, "seen on the host"
    assert pages[-1]["dedup_key"] == "f/omni/health_sweep"
