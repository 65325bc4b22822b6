"""Walks a Windmill flow (``f/omni/*.flow/flow.yaml``) as Windmill's executor would, with no
Windmill server: for the flow-walk tests (tests/test_windmill_flow_walk.py).

What it follows (OpenFlow, as ``wmill`` 1.819's schema describes it):

- ``value.modules`` in order; ``skip_if``; ``stop_after_if`` (``skip_if_stopped``);
- ``input_transforms``: ``static`` values (``$var:``/``$res:`` references resolved from the
  walker's ``variables``) and ``javascript`` expressions, evaluated by ``node`` with
  ``flow_input``, ``results``, ``previous_result``, ``error`` (failure handler) and
  ``result`` (``stop_after_if``) in scope;
- ``forloopflow``: the iterator evaluated, the inner modules run per item with
  ``flow_input.iter = {value, index}`` and their own ``results`` (outer ones visible); the
  loop's result is the list of each iteration's last result; a failed iteration is its error
  object when ``skip_failures``, else the flow fails; ``parallelism`` is recorded;
- ``branchone`` (first branch whose ``expr`` holds, else ``default``) and ``branchall``;
- ``retry`` (``constant.attempts`` more tries), ``continue_on_error``;
- ``suspend``: after the step ran, the flow waits for ``required_events`` approvals; each
  approval is checked as Windmill checks it (``user_auth_required``,
  ``self_approval_disabled`` against the user who started the flow,
  ``user_groups_required``); approvals that do not qualify are refused, and a flow whose
  approvals never come is cancelled at the suspend's timeout (nothing after it runs);
- a failure runs ``failure_module`` with ``error = {message, name, step_id}``.

Steps run through ``run_step(path_or_inline, args, module)`` given by the test: the real
step's ``main`` (lab), or a stub.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

EVALUATOR = r"""
const readline = require("readline");
const rl = readline.createInterface({ input: process.stdin });
rl.on("line", (line) => {
  const { expr, scope } = JSON.parse(line);
  let answer;
  try {
    const names = Object.keys(scope);
    const fn = new Function(...names, `"use strict"; return (${expr});`);
    const value = fn(...names.map((n) => scope[n]));
    answer = { value: value === undefined ? null : value };
  } catch (e) {
    answer = { error: `${e.name}: ${e.message}` };
  }
  process.stdout.write(JSON.stringify(answer) + "\n");
});
"""


class JsError(Exception):
    """An input transform that Windmill could not evaluate either."""


class Node:
    """One ``node`` process evaluating expressions, one JSON line each way."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(["node", "-e", EVALUATOR], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)

    def eval(self, expr: str, scope: dict[str, Any]) -> Any:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps({"expr": expr, "scope": scope}) + "\n")
        self.proc.stdin.flush()
        answer = json.loads(self.proc.stdout.readline())
        if "error" in answer:
            raise JsError(f"{expr!r}: {answer['error']}")
        return answer["value"]

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=30)


@dataclass(frozen=True)
class Approver:
    user: str
    groups: tuple[str, ...] = ()
    signed_in: bool = True


class StepFailed(Exception):
    def __init__(self, step_id: str, message: str, name: str = "Error") -> None:
        super().__init__(message)
        self.step_id, self.message, self.name = step_id, message, name

    def error(self) -> dict[str, Any]:
        return {"message": self.message, "name": self.name, "step_id": self.step_id}


class Stopped(Exception):
    def __init__(self, skipped: bool) -> None:
        self.skipped = skipped


class Cancelled(Exception):
    pass


@dataclass
class Call:
    module_id: str
    runs: str  # script path, or the inline file
    args: dict[str, Any]


@dataclass
class Run:
    status: str = "success"  # success | failure | stopped | cancelled
    results: dict[str, Any] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    suspended_at: list[str] = field(default_factory=list)
    refused_approvals: list[str] = field(default_factory=list)
    parallelism: dict[str, int] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    failure_result: Any = None
    result: Any = None

    def ran(self, runs: str) -> list[Call]:
        return [c for c in self.calls if c.runs == runs]


StepRunner = Callable[[str, dict[str, Any], dict[str, Any]], Any]


class Walker:
    def __init__(self, flow_yaml: Path, run_step: StepRunner, *,
                 variables: dict[str, Any] | None = None, started_by: str = "starter",
                 approvers: list[Approver] | None = None) -> None:
        self.flow_yaml = flow_yaml
        self.flow = yaml.safe_load(flow_yaml.read_text())
        self.run_step = run_step
        self.variables = variables or {}
        self.started_by = started_by
        self.approvers = approvers or []
        self.node = Node()

    # -- inputs -------------------------------------------------------------------------

    def _static(self, value: Any) -> Any:
        if isinstance(value, str) and re.match(r"^\$(var|res):", value):
            if value not in self.variables:
                raise KeyError(f"{value}: not provided to the walker")
            return self.variables[value]
        return value

    def _transform(self, transform: dict[str, Any], scope: dict[str, Any]) -> Any:
        if transform["type"] == "static":
            return self._static(transform.get("value"))
        if transform["type"] == "javascript":
            return self.node.eval(transform["expr"], scope)
        raise ValueError(f"input transform type {transform['type']!r} not supported")

    def _args(self, value: dict[str, Any], scope: dict[str, Any]) -> dict[str, Any]:
        return {name: self._transform(t, scope)
                for name, t in value.get("input_transforms", {}).items()}

    # -- modules ------------------------------------------------------------------------

    def walk(self, flow_input: dict[str, Any]) -> Run:
        run = Run()
        schema = self.flow.get("schema") or {}
        for name, prop in (schema.get("properties") or {}).items():
            if name not in flow_input and "default" in prop:
                flow_input[name] = prop["default"]
        missing = set(schema.get("required") or []) - set(flow_input)
        if missing:
            raise ValueError(f"flow inputs missing: {sorted(missing)}")
        try:
            try:
                last = self._modules(self.flow["value"]["modules"], flow_input,
                                     run.results, run)
                run.result = last
            except Stopped as stop:
                run.status = "stopped" if not stop.skipped else "success"
            except Cancelled:
                run.status = "cancelled"
            except StepFailed as failed:
                run.status = "failure"
                run.error = failed.error()
                handler = self.flow["value"].get("failure_module")
                if handler:
                    scope = {"flow_input": flow_input, "results": run.results,
                             "error": run.error, "previous_result": None}
                    args = self._args(handler["value"], scope)
                    runs = self._runs(handler["value"])
                    run.calls.append(Call("failure", runs, args))
                    run.failure_result = self.run_step(runs, args, handler)
        finally:
            self.node.close()
        return run

    def _runs(self, value: dict[str, Any]) -> str:
        if value["type"] == "script":
            return str(value["path"])
        content = str(value.get("content", ""))
        return str(self.flow_yaml.parent / content.removeprefix("!inline "))

    def _modules(self, modules: list[dict[str, Any]], flow_input: dict[str, Any],
                 results: dict[str, Any], run: Run) -> Any:
        previous = None
        for module in modules:
            scope = {"flow_input": flow_input, "results": results,
                     "previous_result": previous}
            skip = module.get("skip_if")
            if skip and self.node.eval(skip["expr"], scope):
                continue
            previous = self._module(module, flow_input, results, run, scope)
            results[module["id"]] = previous
            stop = module.get("stop_after_if")
            if stop and self.node.eval(stop["expr"], {**scope, "result": previous}):
                raise Stopped(bool(stop.get("skip_if_stopped")))
            if module.get("suspend"):
                self._suspend(module, run)
        return previous

    def _module(self, module: dict[str, Any], flow_input: dict[str, Any],
                results: dict[str, Any], run: Run, scope: dict[str, Any]) -> Any:
        value = module["value"]
        kind = value["type"]
        if kind in ("script", "rawscript"):
            return self._script(module, scope, run)
        if kind == "forloopflow":
            items = self._transform(value["iterator"], scope)
            if not isinstance(items, list):
                raise StepFailed(module["id"], f"iterator is not a list: {items!r}")
            run.parallelism[module["id"]] = (
                self._transform(value["parallelism"], scope) if value.get("parallel")
                else 1)
            out = []
            for index, item in enumerate(items):
                inner_input = {**flow_input, "iter": {"value": item, "index": index}}
                inner = dict(results)
                try:
                    out.append(self._modules(value["modules"], inner_input, inner, run))
                except StepFailed as failed:
                    if not value.get("skip_failures"):
                        raise
                    out.append({"error": failed.error()})
            return out
        if kind == "branchone":
            for branch in value.get("branches", []):
                if self.node.eval(branch["expr"], scope):
                    return self._modules(branch["modules"], flow_input, results, run)
            return self._modules(value.get("default", []), flow_input, results, run)
        if kind == "branchall":
            return [self._modules(b["modules"], flow_input, dict(results), run)
                    for b in value.get("branches", [])]
        raise ValueError(f"module type {kind!r} not supported")

    def _script(self, module: dict[str, Any], scope: dict[str, Any], run: Run) -> Any:
        value = module["value"]
        args = self._args(value, scope)
        runs = self._runs(value)
        attempts = 1 + int(((module.get("retry") or {}).get("constant") or {})
                           .get("attempts", 0))
        for attempt in range(attempts):
            run.calls.append(Call(module["id"], runs, args))
            try:
                return self.run_step(runs, args, module)
            except Exception as exc:  # a step's failure, as Windmill sees it
                if attempt + 1 < attempts:
                    continue
                if module.get("continue_on_error"):
                    return {"error": {"message": str(exc), "name": type(exc).__name__,
                                      "step_id": module["id"]}}
                raise StepFailed(module["id"], str(exc), type(exc).__name__) from exc
        raise AssertionError("unreachable")

    def _suspend(self, module: dict[str, Any], run: Run) -> None:
        suspend = module["suspend"]
        run.suspended_at.append(module["id"])
        needed = int(suspend.get("required_events", 1))
        groups_t = suspend.get("user_groups_required")
        groups = set(self._transform(groups_t, {}) or []) if groups_t else set()
        got = 0
        for approver in self.approvers:
            reason = None
            if suspend.get("user_auth_required") and not approver.signed_in:
                reason = "not signed in"
            elif suspend.get("self_approval_disabled") and approver.user == self.started_by:
                reason = "started the flow"
            elif groups and not groups & set(approver.groups):
                reason = f"not in {sorted(groups)}"
            if reason:
                run.refused_approvals.append(f"{approver.user}: {reason}")
                continue
            got += 1
            if got >= needed:
                return
        # No qualifying approval before the timeout: Windmill cancels the flow.
        if not suspend.get("continue_on_disapprove_timeout"):
            raise Cancelled()
