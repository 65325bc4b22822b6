"""Cross-checks the Windmill sync folder that `wmill lint` does not.

Usage: python check_metadata.py SIGNATURES.json  (run from windmill_scripts/; validate.sh
does). SIGNATURES.json is what parse_bash_signatures.mjs printed: the inputs Windmill's own
parser infers from each bash file. Checks, printing one line per problem and exiting 1:

- every step script `f/**/NAME.sh` has `NAME.script.yaml` whose schema lists exactly the
  inferred inputs, in order, with the same defaults, and requires exactly those without one;
- every step script ends by exec-ing the shared runner (`exec omni-windmill-step ...`, the
  console script installed with omni, see omni/windmill_step.py) and has no code of its own
  for keys, envelopes or exit statuses;
- every flow step that calls `f/...` by path sets only inputs that script has, and every
  input it requires; every inline bash step sets exactly the inputs its file declares.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

RUNNER_CALL = "exec omni-windmill-step "
# What the runner owns: a step doing any of it again has grown its own copy of the runner.
RUNNER_ONLY = ("WM_TOKEN", "BASE_INTERNAL_URL", "result.json", "mktemp", "curl", "HOME=")

Signature = list[dict[str, Any]]


def check_runner_call(sh: Path) -> list[str]:
    lines = [ln for ln in sh.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    problems = []
    if not lines or not lines[-1].startswith(RUNNER_CALL):
        problems.append(f"{sh}: must end with `{RUNNER_CALL}... -- OMNI_ARGS...`")
    for word in RUNNER_ONLY:
        if any(word in ln for ln in lines):
            problems.append(f"{sh}: uses {word}: leave that to omni-windmill-step")
    return problems


def check_script(sh: Path, signature: Signature) -> list[str]:
    meta_path = sh.with_name(sh.stem + ".script.yaml")
    if not meta_path.is_file():
        return [f"{sh}: no {meta_path.name} next to it"]
    schema = yaml.safe_load(meta_path.read_text())["schema"]
    problems = []
    names = [a["name"] for a in signature]
    if list(schema.get("order", [])) != names:
        problems.append(f"{meta_path}: schema.order {schema.get('order')} != inputs {names}")
    if list(schema["properties"]) != names:
        problems.append(f"{meta_path}: properties {list(schema['properties'])} != {names}")
    required = [a["name"] for a in signature if a["default"] is None]
    if list(schema.get("required", [])) != required:
        problems.append(f"{meta_path}: required {schema.get('required')} != {required}")
    for arg in signature:
        prop = schema["properties"].get(arg["name"], {})
        if prop.get("type") != "string":
            problems.append(f"{meta_path}: {arg['name']}: bash inputs are strings")
        if arg["default"] is not None and prop.get("default") != arg["default"]:
            problems.append(
                f"{meta_path}: {arg['name']}: default {prop.get('default')!r} "
                f"!= {arg['default']!r} in {sh.name}"
            )
    return problems


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


def check_flow(flow_yaml: Path, signatures: dict[str, Signature]) -> list[str]:
    flow = yaml.safe_load(flow_yaml.read_text())
    problems = []
    for module in walk_modules(flow["value"]["modules"]):
        value, where = module["value"], f"{flow_yaml}: step {module['id']}"
        given = set(value.get("input_transforms", {}))
        if value["type"] == "script":
            sig = signatures.get(value["path"] + ".sh")
            if sig is None:
                problems.append(f"{where}: calls {value['path']}, which is not a step here")
                continue
            names = {a["name"] for a in sig}
            required = {a["name"] for a in sig if a["default"] is None}
            if given - names:
                problems.append(f"{where}: unknown inputs {sorted(given - names)}")
            if required - given:
                problems.append(f"{where}: missing required inputs {sorted(required - given)}")
        elif value["type"] == "rawscript":
            content = value.get("content", "")
            if not content.startswith("!inline "):
                problems.append(f"{where}: keep inline code in a file (`!inline NAME.sh`)")
                continue
            inline = str(flow_yaml.parent / content.removeprefix("!inline "))
            sig = signatures.get(inline)
            if value.get("language") != "bash" or sig is None:
                problems.append(f"{where}: inline script {inline} is not a checked bash file")
                continue
            names = {a["name"] for a in sig}
            if given != names:
                problems.append(f"{where}: inputs {sorted(given)} != {inline} {sorted(names)}")
    return problems


def main(argv: list[str]) -> int:
    signatures: dict[str, Signature] = json.loads(Path(argv[1]).read_text())
    problems: list[str] = []
    steps = sorted(p for p in Path("f").rglob("*.sh") if ".flow" not in str(p.parent))
    for sh in steps:
        problems += check_script(sh, signatures[str(sh)])
        problems += check_runner_call(sh)
    for flow_yaml in sorted(Path("f").rglob("flow.yaml")):
        problems += check_flow(flow_yaml, signatures)
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
