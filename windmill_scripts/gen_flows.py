"""Generates omni's Windmill flows (``f/omni/*.flow/flow.yaml``) and schedules.

Usage: ``python windmill_scripts/gen_flows.py [--check]`` (validate.sh runs ``--check``).

Every flow: steps call the generated omni steps by path (``f/omni/<command>``), every step
that runs a script has a ``timeout`` (SSH, Postgres, ACME and HTTP can all hang), read-only
ones and the pager a ``retry``; a ``failure_module`` pages (``f/omni/page`` with the webhook
resource ``f/omni/pager``). Recovery: OpenFlow has no recovery module, so a flow that no
schedule runs ends with a ``recovery`` step resolving its incident (same ``dedup_key`` as
the failure page; ``continue_on_error``: a pager outage does not fail a good run); a
scheduled flow's recovery is its schedule's ``on_recovery`` (which fires only on the first
success after a failure, instead of a resolve every 5 minutes). Flows that change hosts
(``onboard_tenant``, ``rollout``) suspend for an approval first: self-approval disabled,
approvers from the group ``omni-approvers``, the plan rendered on the approval page, and the
apply step takes the approved plan's fingerprint (``--expect-plan``). Every step that
applies a plan takes a fingerprint from a dry run earlier in the same flow; the steps that
may write a tenant file get ``git_ref`` (they propose the change as a pull request). Every
schedule has ``on_failure`` (page) and ``on_recovery`` (resolve) handlers.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
FOLDER = HERE / "f" / "omni"
INVENTORY = {"type": "static", "value": "$var:f/omni/inventory_path"}
KEY = {"type": "static", "value": "f/omni/ssh_private_key"}
PAGER = "$res:f/omni/pager"
APPROVERS = "omni-approvers"
TAG = "omni"
SCHEMA = "https://json-schema.org/draft/2020-12/schema"


def js(expr: str) -> dict[str, Any]:
    return {"type": "javascript", "expr": expr}


# The inventory at the flow's commit (empty: the worker's inventory path).
GIT_REF = js("flow_input.git_ref || ''")
SHA_PATTERN = "^[0-9a-f]{40}$"
PAGER_RETRY = {"constant": {"attempts": 3, "seconds": 20}}


def static(value: Any) -> dict[str, Any]:
    return {"type": "static", "value": value}


def step(id_: str, summary: str, path: str, inputs: dict[str, Any], *,
         timeout: int | None = None, retry: int = 0, **extra: Any) -> dict[str, Any]:
    module: dict[str, Any] = {"id": id_, "summary": summary, **extra, "value": {
        "type": "script", "path": f"f/omni/{path}", "tag_override": TAG,
        "input_transforms": {**inputs, "inventory": INVENTORY, "ssh_key_variable": KEY}}}
    if timeout:
        module["timeout"] = timeout
    if retry:
        module["retry"] = {"constant": {"attempts": retry, "seconds": 30}}
    return module


def inline(id_: str, summary: str, file: str, language: str,
           inputs: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"id": id_, "summary": summary, **extra, "timeout": 60, "value": {
        "type": "rawscript", "language": language, "content": f"!inline {file}", "tag": TAG,
        "input_transforms": inputs}}


def loop(id_: str, summary: str, iterator: str, modules: list[dict[str, Any]],
         parallelism: int) -> dict[str, Any]:
    return {"id": id_, "summary": summary, "value": {
        "type": "forloopflow", "iterator": js(iterator), "skip_failures": True,
        "parallel": True, "parallelism": static(parallelism), "modules": modules}}


def failure(what: str) -> dict[str, Any]:
    return {"id": "failure", "summary": "Page on-call", "timeout": 120, "retry": PAGER_RETRY,
            "value": {
        "type": "script", "path": "f/omni/page", "tag_override": TAG, "input_transforms": {
            "pager": static(PAGER),
            "summary": js(f"`omni {what} failed at step ${{error.step_id}}: ${{error.message}}`"),
            "dedup_key": static(f"f/omni/{what}"),
            "error": js("error"),
            "path": static(f"f/omni/{what}"),
        }}}


def recovery(what: str) -> dict[str, Any]:
    """Last step of a flow no schedule runs: resolve the incident its failure handler
    opened (same dedup_key). A pager outage must not fail a run that worked."""
    return {"id": "recovery", "summary": "Resolve on-call's incident: this run worked",
            "continue_on_error": True, "timeout": 120, "retry": PAGER_RETRY, "value": {
        "type": "script", "path": "f/omni/page", "tag_override": TAG, "input_transforms": {
            "pager": static(PAGER),
            "event_action": static("resolve"),
            "dedup_key": static(f"f/omni/{what}"),
            "path": static(f"f/omni/{what}"),
        }}}


def approval(title: str, fingerprint: str, plans: str) -> dict[str, Any]:
    return inline("approval", "Approve the plan (shown on this page)", "approval.py", "python3", {
        "title": js(title), "fingerprint": js(fingerprint), "plans": js(plans)},
        suspend={
            "required_events": 1, "timeout": 86400, "user_auth_required": True,
            "self_approval_disabled": True, "user_groups_required": static([APPROVERS]),
        })


def verdict(what: str, results: str, slugs: str) -> dict[str, Any]:
    failed = (f"{slugs}.filter((s, i) => {{ const r = {results}[i]; "
              "return !r || r.status !== 'success'; }).join(' ')")
    return inline("verdict", "Fail (and page) when any tenant failed", "verdict.sh", "bash", {
        "what": static(what), "checked": js(f"String({slugs}.length)"), "failed": js(failed)})


SCHEDULES = {
    "health_sweep": ("0 */5 * * * *", "Health sweep every 5 minutes"),
    "backup_nightly": ("0 0 2 * * *", "Backup every night at 02:00 UTC"),
    "backup_verify_monthly": ("0 0 4 1 * *", "Backup restore test on the 1st, 04:00 UTC"),
    "certs_renew_daily": ("0 30 3 * * *", "Certificate renewal every day at 03:30 UTC"),
}


def flow(summary: str, description: str, modules: list[dict[str, Any]], what: str,
         schema: dict[str, Any] | None = None) -> dict[str, Any]:
    if what not in SCHEDULES:
        modules = [*modules, recovery(what)]
    return {"summary": summary, "description": description,
            "value": {"modules": modules, "failure_module": failure(what)},
            "schema": schema or {"$schema": SCHEMA, "type": "object", "properties": {},
                                 "required": []}}


def obj_schema(props: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"$schema": SCHEMA, "type": "object", "order": list(props), "properties": props,
            "required": required}


TENANT_SLUGS = "results.list_tenants.data.tenants.map((t) => t.slug)"
LIST = step("list_tenants", "omni tenant list --no-probe", "tenant_list",
            {"no_probe": static(True)}, timeout=120, retry=2)

FLOWS: dict[str, dict[str, Any]] = {
    "onboard_tenant": flow(
        "Onboard a tenant: plan, approval, create with the approved plan, health-check",
        "plan (`tenant create --dry-run`) -> approval (another member of omni-approvers; "
        "the plan and its diffs on the approval page) -> create with --expect-plan (the new "
        "tenant file comes back as a pull request) -> health-check. Every step reads the "
        "inventory from git at `git_ref`. See README.md (Windmill).",
        [
            step("plan", "Plan: omni tenant create --dry-run", "tenant_create", {
                "slug": js("flow_input.slug"), "host": js("flow_input.host || null"),
                "domains": js("flow_input.domains"), "image": js("flow_input.image || null"),
                "dry_run": static(True), "git_ref": GIT_REF}, timeout=600, retry=1,
                stop_after_if={"expr": "result.changed === false", "skip_if_stopped": True}),
            approval("`Onboard ${flow_input.slug}`", "results.plan.data.plan_fingerprint",
                     "[results.plan]"),
            step("create", "Apply: omni tenant create --expect-plan", "tenant_create", {
                "slug": js("flow_input.slug"), "host": js("flow_input.host || null"),
                "domains": js("flow_input.domains"), "image": js("flow_input.image || null"),
                "dry_run": static(False),
                "expect_plan": js("results.plan.data.plan_fingerprint"), "git_ref": GIT_REF},
                 timeout=1800),
            step("health", "omni health-check SLUG", "health_check",
                 {"slugs": js("[flow_input.slug]"), "git_ref": GIT_REF}, timeout=300, retry=2),
        ], "onboard_tenant",
        obj_schema({
            "slug": {"type": "string", "description": "Tenant slug, e.g. acme-shop",
                     "pattern": "^[a-z0-9][a-z0-9-]*$"},
            "host": {"type": "string", "description": "Host (new tenant only)", "default": ""},
            "domains": {"type": "array", "items": {"type": "string"},
                        "description": "Domains, primary first (new tenant only)",
                        "default": []},
            "image": {"type": "string", "description": "Medusa image (new tenant only)",
                      "default": ""},
            "git_ref": {"type": "string", "pattern": SHA_PATTERN,
                        "description": "Commit of the inventory repository (full SHA) to "
                                       "plan and apply from"},
        }, ["slug", "git_ref"])),
    "rollout": flow(
        "Roll out an image: fleet plan gate, plan per tenant, approval, deploy, roll back failures",
        "gate (`omni plan --expect-plan` on the inventory at `git_ref`: the fleet plan is still "
        "the reviewed one) -> plan (`deploy --dry-run` per tenant) -> approval (omni-approvers, "
        "not the starter) -> deploy each tenant with its approved fingerprint, `parallelism` at "
        "a time -> roll back the tenants whose deploy failed -> fail (and page) if any failed. "
        "Every step reads the inventory from git at `git_ref` (the merged commit).",
        [
            step("gate", "The fleet plan is still the reviewed one: omni plan --expect-plan",
                 "plan", {"markdown": static(False),
                          "expect_plan": js("flow_input.expect_fleet_plan || null"),
                          "git_ref": GIT_REF}, timeout=900, retry=1),
            loop("plan", "Plan: omni deploy --dry-run, per tenant", "flow_input.tenants", [
                step("plan_tenant", "omni deploy SLUG --dry-run", "deploy", {
                    "image": js("flow_input.image"), "slugs": js("[flow_input.iter.value]"),
                    "dry_run": static(True), "git_ref": GIT_REF}, timeout=600, retry=1)], 4),
            inline("plan_ok", "Every tenant planned", "verdict.sh", "bash", {
                "what": static("plan"), "checked": js("String(flow_input.tenants.length)"),
                "failed": js("flow_input.tenants.filter((s, i) => !results.plan[i] || "
                             "results.plan[i].status !== 'success').join(' ')")}),
            approval("`Roll out ${flow_input.image} to ${flow_input.tenants.join(', ')}`",
                     "results.plan.map((p) => p.data.plan_fingerprint).join(' ')",
                     "results.plan"),
            loop("deploy", "omni deploy --expect-plan, per tenant", "flow_input.tenants", [
                step("deploy_tenant", "omni deploy SLUG --expect-plan", "deploy", {
                    "image": js("flow_input.image"), "slugs": js("[flow_input.iter.value]"),
                    "expect_plan": js("results.plan[flow_input.iter.index].data"
                                      ".plan_fingerprint"), "git_ref": GIT_REF},
                     timeout=3600)], 2),
            loop("rollback_failed", "omni rollback, for each tenant whose deploy failed",
                 "flow_input.tenants.filter((s, i) => !results.deploy[i] || "
                 "results.deploy[i].status !== 'success')", [
                     step("plan_rollback", "omni rollback SLUG --dry-run", "rollback",
                          {"slug": js("flow_input.iter.value"), "dry_run": static(True),
                           "git_ref": GIT_REF}, timeout=600, retry=1),
                     step("rollback_tenant", "omni rollback SLUG --expect-plan", "rollback",
                          {"slug": js("flow_input.iter.value"),
                           "expect_plan": js("results.plan_rollback.data.plan_fingerprint"),
                           "git_ref": GIT_REF}, timeout=1800)], 2),
            verdict("rollout", "results.deploy", "flow_input.tenants"),
        ], "rollout",
        obj_schema({
            "tenants": {"type": "array", "items": {"type": "string"},
                        "description": "Tenant slugs to roll out to"},
            "image": {"type": "string", "description": "The Medusa image to release"},
            "git_ref": {"type": "string", "pattern": SHA_PATTERN,
                        "description": "Commit of the inventory repository (full SHA) to "
                                       "plan and deploy from"},
            "expect_fleet_plan": {"type": "string", "default": "",
                                  "description": "The reviewed fleet plan fingerprint "
                                                 "(omni plan); the gate fails when the "
                                                 "fleet plan is no longer that one"},
        }, ["tenants", "image", "git_ref"])),
    "migrate_all_fleet": flow(
        "Migrations for every tenant, fanned out per tenant",
        "omni tenant list -> per tenant, 2 at a time: omni migrate-all --tenant SLUG "
        "--dry-run, then the same with --expect-plan (only what was just planned) -> fail "
        "(and page) naming the tenants that failed.",
        [LIST, loop("migrate", "omni migrate-all --tenant SLUG", TENANT_SLUGS, [
            step("plan_tenant", "omni migrate-all --tenant SLUG --dry-run", "migrate_all",
                 {"tenants": js("[flow_input.iter.value]"), "dry_run": static(True)},
                 timeout=600, retry=1),
            step("migrate_tenant", "omni migrate-all --tenant SLUG --expect-plan",
                 "migrate_all", {"tenants": js("[flow_input.iter.value]"),
                                 "expect_plan": js("results.plan_tenant.data.plan_fingerprint")},
                 timeout=3600)], 2),
         verdict("migrate-all", "results.migrate", TENANT_SLUGS)], "migrate_all_fleet"),
    "health_sweep": flow(
        "Health sweep: every check of every tenant, in parallel",
        "omni tenant list -> omni health-check SLUG per tenant, 4 at a time -> fail (and "
        "page) naming every unhealthy tenant.",
        [LIST, loop("check_tenants", "omni health-check SLUG", TENANT_SLUGS, [
            step("check_tenant", "omni health-check SLUG", "health_check",
                 {"slugs": js("[flow_input.iter.value]")}, timeout=300, retry=1)], 4),
         verdict("health-check", "results.check_tenants", TENANT_SLUGS)], "health_sweep"),
    "backup_nightly": flow(
        "Nightly offsite backup of every tenant", "omni backup run --all.",
        [step("backup", "omni backup run --all", "backup", {"every": static(True)},
              timeout=4 * 3600)], "backup_nightly"),
    "backup_verify_monthly": flow(
        "Monthly restore test of every tenant's latest backup", "omni backup verify --all.",
        [step("verify", "omni backup verify --all", "backup_verify", {"every": static(True)},
              timeout=6 * 3600)], "backup_verify_monthly"),
    "certs_renew_daily": flow(
        "Daily certificate renewal", "omni certs renew --dry-run, then omni certs renew "
        "--expect-plan (only the certificates that are due).",
        [step("plan", "omni certs renew --dry-run: which certificates are due", "certs_renew",
              {"dry_run": static(True)}, timeout=600, retry=1),
         step("renew", "omni certs renew --expect-plan", "certs_renew",
              {"expect_plan": js("results.plan.data.plan_fingerprint")}, timeout=1800)],
        "certs_renew_daily"),
}



def schedule(flow_name: str, cron: str, summary: str) -> dict[str, Any]:
    return {
        "summary": summary,
        "description": f"Runs f/omni/{flow_name}; pages on failure, resolves on recovery.",
        "schedule": cron, "timezone": "UTC", "enabled": True,
        "script_path": f"f/omni/{flow_name}", "is_flow": True, "args": {},
        "no_flow_overlap": True, "ws_error_handler_muted": False,
        "on_failure": "script/f/omni/page", "on_failure_times": 1, "on_failure_exact": False,
        "on_failure_extra_args": {"pager": PAGER, "severity": "error"},
        "on_recovery": "script/f/omni/page", "on_recovery_times": 1,
        "on_recovery_extra_args": {"pager": PAGER, "event_action": "resolve"},
    }


def generate() -> dict[Path, str]:
    def dump(data: dict[str, Any]) -> str:
        return ("# Generated by windmill_scripts/gen_flows.py: edit it there.\n"
                + yaml.safe_dump(data, sort_keys=False, width=100))

    out = {FOLDER / f"{name}.flow" / "flow.yaml": dump(data) for name, data in FLOWS.items()}
    for name, (cron, summary) in SCHEDULES.items():
        out[FOLDER / f"{name}.schedule.yaml"] = dump(schedule(name, cron, summary))
    return out


def main(argv: list[str]) -> int:
    files = generate()
    if "--check" in argv:
        stale = [str(p.relative_to(HERE)) for p, text in files.items()
                 if not p.is_file() or p.read_text() != text]
        for name in stale:
            print(f"{name}: stale; run python windmill_scripts/gen_flows.py")
        return 1 if stale else 0
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
