"""Cross-checks the Windmill sync folder that `wmill lint` does not.

Usage: python check_metadata.py SIGNATURES.json  (run from windmill_scripts/; validate.sh
does). SIGNATURES.json is what parse_bash_signatures.mjs printed for the inline bash steps.
(The Python steps' schemas are checked against Windmill's own parser by
``gen_steps.py --check``.) Prints one line per problem and exits 1 if any:

- scripts: every ``f/**/*.py`` has a ``.script.yaml`` with ``tag: omni``; a script imports
  only the standard library (so Windmill installs nothing, never PyPI's ``omni``);
- flows: a step calling ``f/...`` exists and gets only inputs it has and every input it
  requires; an inline step gets exactly its file's inputs; every flow has a
  ``failure_module`` calling ``f/omni/page``; a flow that applies a change to a host
  (``APPLY_STEPS`` not in dry-run) suspends first for an approval with self-approval
  disabled and approvers from a group; every step that takes a plan fingerprint
  (``expect_plan`` and ``dry_run`` inputs) and is not a dry run gets one from a result of
  this flow (``results.``); a step that may write a tenant file (``GIT_REF_STEPS``) gets
  ``git_ref``; every module running a script (the failure handler too) has a ``timeout``;
- recovery: a flow that no schedule here runs ends with a ``recovery`` step resolving its
  incident through ``f/omni/page`` (``event_action: resolve``, ``continue_on_error``);
- schedules: the cron has 6 valid fields, ``script_path`` is a flow here, and
  ``on_failure`` / ``on_recovery`` page.
"""

from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

TAG = "omni"
PAGE = "f/omni/page"
# Steps that apply a reviewed change; a flow running one must suspend for approval first.
APPLY_STEPS = {"f/omni/tenant_create", "f/omni/deploy", "f/omni/tenant_destroy",
               "f/omni/backup_restore", "f/omni/restart"}
# Undo paths: run after an approved apply failed, inside the same approved flow.
UNDO_STEPS = {"f/omni/rollback"}
# Steps whose command may write a tenant file: they apply only on the inventory from git.
GIT_REF_STEPS = {"f/omni/tenant_create", "f/omni/deploy", "f/omni/rollback",
                 "f/omni/tenant_destroy"}
_CRON_FIELD = re.compile(r"^(\*|\d+(-\d+)?)(/\d+)?(,(\*|\d+(-\d+)?)(/\d+)?)*$")
_CRON_RANGES = ((0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 7))


def walk_modules(modules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = []
    for module in modules:
        found.append(module)
        value = module.get("value", {})
        found += walk_modules(value.get("modules", []))
        for branch in value.get("branches", []):
            found += walk_modules(branch.get("modules", []))
        found += walk_modules(value.get("default", []))
    return found


def stdlib_only(path: Path) -> list[str]:
    problems = []
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""] if node.level == 0 else ["."]
        for name in names:
            top = name.split(".")[0]
            if top == "omni" or top not in sys.stdlib_module_names:
                problems.append(f"{path}: imports {name}: Windmill would install it from "
                                "PyPI (call the omni executable instead)")
    return problems


def check_scripts(folder: Path) -> list[str]:
    problems = []
    for script in sorted(folder.rglob("*.py")):
        problems += stdlib_only(script)
        if ".flow" in str(script.parent):
            continue
        meta = script.with_name(script.stem + ".script.yaml")
        if not meta.is_file():
            problems.append(f"{script}: no {meta.name}")
        elif yaml.safe_load(meta.read_text()).get("tag") != TAG:
            problems.append(f"{meta}: tag must be {TAG!r} (the worker group with omni)")
    return problems


def _python_inputs(path: Path) -> set[str]:
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef) and node.name == "main":
            return {a.arg for a in node.args.args}
    return set()


def _is_dry_run(value: dict[str, Any]) -> bool:
    dry = value.get("input_transforms", {}).get("dry_run", {})
    return bool(dry.get("type") == "static" and dry.get("value") is True)


def check_flow(flow_yaml: Path, bash_signatures: dict[str, Any], root: Path) -> list[str]:
    flow = yaml.safe_load(flow_yaml.read_text())
    problems = []
    top = flow["value"]["modules"]
    approved = False
    for module in walk_modules(top):
        value, where = module["value"], f"{flow_yaml}: step {module['id']}"
        given = set(value.get("input_transforms", {}))
        if value["type"] in ("script", "rawscript") and "timeout" not in module:
            problems.append(f"{where}: needs a timeout (a step can hang)")
        suspend = module.get("suspend")
        if suspend:
            groups = suspend.get("user_groups_required", {}).get("value")
            if not (suspend.get("self_approval_disabled") and suspend.get("user_auth_required")
                    and groups):
                problems.append(f"{where}: approval must require a signed-in user from a "
                                "group, not the one who started the flow")
            else:
                approved = True
        if value["type"] == "script":
            path = value["path"]
            meta = root / f"{path}.script.yaml"
            if not meta.is_file():
                problems.append(f"{where}: calls {path}, which is not a script here")
                continue
            schema = yaml.safe_load(meta.read_text())["schema"]
            names, required = set(schema["properties"]), set(schema.get("required", []))
            if given - names:
                problems.append(f"{where}: unknown inputs {sorted(given - names)}")
            if required - given:
                problems.append(f"{where}: missing required inputs {sorted(required - given)}")
            applies = not _is_dry_run(value)
            if path in APPLY_STEPS and applies and not approved:
                problems.append(f"{where}: applies {path} without an approval before it")
            if applies and {"expect_plan", "dry_run"} <= names:
                expr = value["input_transforms"].get("expect_plan", {}).get("expr", "")
                if "results." not in expr:
                    problems.append(f"{where}: applies {path} without the approved "
                                    "fingerprint (expect_plan from a plan in this flow)")
            if path in GIT_REF_STEPS and applies and "git_ref" not in given:
                problems.append(f"{where}: applies {path} without git_ref (its tenant file "
                                "change must come back as a pull request)")
            if path in UNDO_STEPS and not approved:
                problems.append(f"{where}: runs {path} without an approval before it")
        elif value["type"] == "rawscript":
            content = value.get("content", "")
            if not content.startswith("!inline "):
                problems.append(f"{where}: keep inline code in a file (`!inline NAME`)")
                continue
            inline = flow_yaml.parent / content.removeprefix("!inline ")
            if value.get("language") == "bash":
                sig = bash_signatures.get(str(inline.relative_to(root)))
                names = {a["name"] for a in sig} if sig is not None else None
            elif value.get("language") == "python3" and inline.is_file():
                names = _python_inputs(inline)
            else:
                names = None
            if names is None:
                problems.append(f"{where}: inline script {inline} is not a checked file")
            elif given != names:
                problems.append(f"{where}: inputs {sorted(given)} != {inline} {sorted(names)}")
    failure = flow["value"].get("failure_module") or {}
    if failure.get("id") != "failure" or failure.get("value", {}).get("path") != PAGE:
        problems.append(f"{flow_yaml}: needs a failure_module (id failure) calling {PAGE}")
    elif "timeout" not in failure:
        problems.append(f"{flow_yaml}: failure_module needs a timeout")
    return problems


def recovery_problem(flow_yaml: Path) -> str | None:
    """None when the flow's last step resolves its incident through the pager."""
    modules = yaml.safe_load(flow_yaml.read_text())["value"]["modules"]
    last = modules[-1] if modules else {}
    value = last.get("value", {})
    action = value.get("input_transforms", {}).get("event_action", {})
    if (last.get("id") == "recovery" and value.get("path") == PAGE
            and action == {"type": "static", "value": "resolve"}
            and last.get("continue_on_error") is True):
        return None
    return (f"{flow_yaml}: needs a recovery handler: a schedule with on_recovery, or a last "
            f"step `recovery` calling {PAGE} with event_action resolve (continue_on_error)")


def cron_problem(cron: str) -> str | None:
    fields = cron.split()
    if len(fields) != 6:
        return f"{cron!r}: Windmill's cron has 6 fields (seconds first)"
    for text, (low, high) in zip(fields, _CRON_RANGES, strict=True):
        if not _CRON_FIELD.match(text):
            return f"{cron!r}: field {text!r} is not valid"
        for number in re.findall(r"\d+", text.split("/")[0]):
            if not low <= int(number) <= high:
                return f"{cron!r}: {number} out of range {low}-{high}"
    return None


def check_schedule(schedule_yaml: Path, root: Path) -> list[str]:
    schedule = yaml.safe_load(schedule_yaml.read_text())
    problems = []
    problem = cron_problem(str(schedule.get("schedule", "")))
    if problem:
        problems.append(f"{schedule_yaml}: {problem}")
    target = root / f"{schedule.get('script_path')}.flow" / "flow.yaml"
    if not (schedule.get("is_flow") and target.is_file()):
        problems.append(f"{schedule_yaml}: script_path {schedule.get('script_path')} is not "
                        "a flow here")
    for handler in ("on_failure", "on_recovery"):
        if schedule.get(handler) != f"script/{PAGE}":
            problems.append(f"{schedule_yaml}: {handler} must be script/{PAGE}")
        if "pager" not in (schedule.get(f"{handler}_extra_args") or {}):
            problems.append(f"{schedule_yaml}: {handler}_extra_args needs the pager resource")
    return problems


def check_all(root: Path, bash_signatures: dict[str, Any]) -> list[str]:
    folder = root / "f"
    problems = check_scripts(folder)
    scheduled = set()
    for schedule_yaml in sorted(folder.rglob("*.schedule.yaml")):
        problems += check_schedule(schedule_yaml, root)
        schedule = yaml.safe_load(schedule_yaml.read_text())
        if schedule.get("on_recovery"):
            scheduled.add(root / f"{schedule.get('script_path')}.flow" / "flow.yaml")
    for flow_yaml in sorted(folder.rglob("flow.yaml")):
        problems += check_flow(flow_yaml, bash_signatures, root)
        if flow_yaml not in scheduled:
            problem = recovery_problem(flow_yaml)
            if problem:
                problems.append(problem)
    return problems


def main(argv: list[str]) -> int:
    signatures: dict[str, Any] = json.loads(Path(argv[1]).read_text())
    problems = check_all(Path.cwd(), signatures)
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
