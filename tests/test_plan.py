"""``omni plan``: sorting plans for review, fingerprints, the fleet run and the markdown
comment, with a stand-in planner and scanner (no server). The real planner is
``tenant create --dry-run``'s own (``plan_tenant``); the lab run is in the README."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from omni.engine.step import FieldChange, Step, Verb, fingerprint, noop
from omni.errors import HostUnreachable, InvalidInput, StepFailed
from omni.output.plan_markdown import MARKER, MAX_CHARS, render_markdown
from omni.usecases.plan import (
    PlanRequest,
    Review,
    TenantPlanView,
    fleet_fingerprint,
    plan_fleet,
    tenant_outcome,
)

INVENTORY = Path(__file__).resolve().parent.parent / "inventory"
NOW = datetime(2026, 12, 1, tzinfo=UTC)
SECRET = "s3cr3t-never-shown-0123456789"

IN_SYNC = (noop("tenant.secrets", "up to date"), noop("medusa.app", "running"))
DRIFTED = (
    noop("tenant.secrets", "up to date"),
    Step("medusa.env", Verb.UPDATE, "update /srv/x/medusa.env",
         diff="--- a\n+++ b\n-A=1\n+A=2\n+JWT_SECRET=********\n"),
    Step("medusa.app", Verb.REPLACE, "replace container omni-x-app",
         (FieldChange("config", "h1", "h2"),
          FieldChange("image", "medusa-store:2.21.2-r1", "medusa-store:2.21.2-r2"))),
    Step("acme.certificate", Verb.UPDATE, "renew: expires in 10 days"),
)
MISSING = (
    Step("tenant.secrets", Verb.CREATE, "create secrets.json"),
    Step("postgres.role", Verb.CREATE, "create role", (FieldChange("password", None, "********"),)),
    Step("nginx.vhost", Verb.CREATE, "create vhost", diff="+server {}\n"),
)


def test_review_sorts_steps_into_what_a_reviewer_looks_for() -> None:
    assert Review.of(IN_SYNC).state == "in_sync"
    review = Review.of(DRIFTED)
    assert review.state == "changes"
    assert [f["resource"] for f in review.files] == ["medusa.env"]
    assert review.images == [{"before": "medusa-store:2.21.2-r1",
                              "after": "medusa-store:2.21.2-r2"}]
    assert review.certificate == "renew: expires in 10 days"
    assert review.other == ["replace medusa.app: replace container omni-x-app"]
    assert Review.of(MISSING).state == "missing"


def test_tenant_outcome_lists_only_changing_steps_with_create_fingerprint() -> None:
    outcome = tenant_outcome(TenantPlanView(DRIFTED, fingerprint(DRIFTED)))
    assert outcome.status == "ok"
    assert outcome.data["plan_fingerprint"] == fingerprint(DRIFTED)
    assert outcome.data["changes"] == 3
    assert [s["resource"] for s in outcome.data["steps"]] == [
        "medusa.env", "medusa.app", "acme.certificate"]


def test_fleet_fingerprint_is_sha256_over_sorted_tenant_fingerprints() -> None:
    want = hashlib.sha256(b"a=11\nb=22\n").hexdigest()[:16]
    assert fleet_fingerprint({"b": "22", "a": "11"}) == want
    assert fleet_fingerprint({"a": "11", "b": "22"}) == want
    assert fleet_fingerprint({"a": "11", "b": "23"}) != want
    assert fleet_fingerprint({"a": "11", "b": None}) is None


class FakePool:
    def __init__(self, down: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.down = down
        self.got: list[str] = []

    def get(self, name: str) -> Any:
        self.got.append(name)
        if name in self.down:
            raise HostUnreachable(f"host {name}: connection refused", host=name)
        return name  # the "session" the fake planner receives


PLANS = {"acme-outdoor": DRIFTED, "blue-bakery": IN_SYNC, "staging-demo": MISSING}


def fake_planner(session: Any, inventory: Any, tenant: Any, now: datetime) -> TenantPlanView:
    assert now == NOW
    if tenant.slug == "broken":
        raise StepFailed("image not present")
    steps = PLANS[tenant.slug]
    return TenantPlanView(steps, fingerprint(steps))


def fake_scanner(session: Any, host: str, claimed: Any) -> dict[str, Any]:
    containers = [{"name": "omni-ghost-app", "tenant": "ghost", "image": "x", "running": True}]
    return {"host": host, "containers": containers if host == "dev" else [],
            "databases": ["tenant_ghost"] if host == "dev" else [], "error": None,
            "claimed": list(claimed)}


def run_plan(request: PlanRequest | None = None, pool: FakePool | None = None,
             inventory: Path = INVENTORY) -> Any:
    return plan_fleet(request or PlanRequest(), inventory, clock=lambda: NOW, planner=fake_planner,
                      scanner=fake_scanner, pool=pool or FakePool())


def test_plan_of_the_whole_fleet() -> None:
    result = run_plan()
    assert result.ok and result.exit_code == 0 and not result.changed
    rows = {r["tenant"]: r for r in result.data["tenants"]}
    assert rows["acme-outdoor"]["state"] == "changes"
    assert rows["blue-bakery"]["state"] == "in_sync"
    assert rows["staging-demo"]["state"] == "missing"
    assert result.data["states"] == {"in_sync": 1, "changes": 1, "missing": 1}
    assert result.data["fleet_fingerprint"] == fleet_fingerprint(
        {slug: fingerprint(steps) for slug, steps in PLANS.items()})
    scanned = {h["host"]: h for h in result.data["unclaimed"]}
    assert scanned["dev"]["databases"] == ["tenant_ghost"]
    assert scanned["dev"]["claimed"] == ["staging-demo"]
    assert scanned["netcup"]["claimed"] == ["acme-outdoor", "blue-bakery"]


def test_plan_of_named_tenants_skips_the_unclaimed_scan() -> None:
    result = run_plan(PlanRequest(("blue-bakery",)))
    assert [r["tenant"] for r in result.data["tenants"]] == ["blue-bakery"]
    assert result.data["unclaimed"] == []
    assert result.data["fleet_fingerprint"] == fleet_fingerprint(
        {"blue-bakery": fingerprint(IN_SYNC)})


def test_plan_of_one_host_scans_only_that_host() -> None:
    result = run_plan(PlanRequest(host="dev"))
    assert [r["tenant"] for r in result.data["tenants"]] == ["staging-demo"]
    assert [h["host"] for h in result.data["unclaimed"]] == ["dev"]


def test_expect_plan_refuses_a_fleet_plan_that_drifted() -> None:
    good = run_plan().data["fleet_fingerprint"]
    assert run_plan(PlanRequest(expect_plan=good)).ok
    with pytest.raises(InvalidInput, match="changed since it was reviewed"):
        run_plan(PlanRequest(expect_plan="0000000000000000"))


def test_unreachable_host_has_no_fingerprint_and_exits_5(tmp_path: Path) -> None:
    result = run_plan(pool=FakePool(down={"netcup"}))
    assert not result.ok and result.exit_code == 5
    rows = {r["tenant"]: r for r in result.data["tenants"]}
    assert rows["acme-outdoor"]["status"] == "unreachable"
    assert rows["staging-demo"]["state"] == "missing"
    assert result.data["fleet_fingerprint"] is None
    netcup = next(h for h in result.data["unclaimed"] if h["host"] == "netcup")
    assert netcup["error"]["code"] == "host_unreachable"


def test_a_tenant_that_cannot_be_planned_fails_the_plan(tmp_path: Path) -> None:
    inventory = tmp_path / "inventory"
    (inventory / "tenants").mkdir(parents=True)
    (inventory / "hosts.yaml").write_text((INVENTORY / "hosts.yaml").read_text())
    (inventory / "tenants" / "broken.yaml").write_text(
        "slug: broken\nhost: dev\ndomains: [broken.example.net]\nimage: medusa-store:x\n")
    result = run_plan(inventory=inventory)
    assert result.exit_code == 3
    assert result.data["fleet_fingerprint"] is None
    assert "broken@dev" in result.errors[0]["message"]


def test_markdown_comment_has_summary_table_and_collapsible_diffs() -> None:
    result = run_plan()
    text = render_markdown(result.data, result.errors)
    assert text.startswith(MARKER)
    assert f"Fleet fingerprint: `{result.data['fleet_fingerprint']}`" in text
    assert "| acme-outdoor | netcup | changes | 3 |" in text
    assert "medusa-store:2.21.2-r1 → medusa-store:2.21.2-r2" in text
    assert text.count("<details>") == 2  # acme-outdoor and staging-demo; not blue-bakery
    assert "```diff\n--- a\n+++ b\n-A=1\n+A=2\n+JWT_SECRET=********\n```" in text
    assert "database `tenant_ghost`" in text


def test_markdown_cells_and_fences_cannot_be_broken_out_of() -> None:
    data = {"tenants": [{
        "tenant": "t", "host": "dev", "status": "ok", "state": "changes", "changes": 1,
        "detail": "<script>x</script> | y", "plan_fingerprint": "f", "images": [],
        "files": [{"resource": "medusa.env"}],
        "steps": [{"resource": "medusa.env", "verb": "update", "summary": "a|b", "changes": [],
                   "diff": "+```\n+</details>\n"}],
    }], "states": {"changes": 1}, "fleet_fingerprint": "f", "unclaimed": []}
    text = render_markdown(data)
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert "a\\|b" in text
    assert "````diff\n+```\n+</details>\n````" in text


def test_markdown_stays_under_the_comment_limit() -> None:
    huge = "\n".join(f"+line {i} " + "x" * 100 for i in range(150))
    rows = [{"tenant": f"t{i}", "host": "dev", "status": "ok", "state": "changes",
             "changes": 1, "detail": "1 change(s)", "plan_fingerprint": "f", "images": [],
             "files": [], "steps": [{"resource": "medusa.env", "verb": "update",
                                     "summary": "s", "changes": [], "diff": huge}]}
            for i in range(40)]
    text = render_markdown({"tenants": rows, "states": {"changes": 40}, "unclaimed": []})
    assert len(text) <= MAX_CHARS + 100
    assert "| t39 | dev |" in text  # the summary table survives: the diffs went first


def test_no_secret_reaches_the_plan_output() -> None:
    steps = (Step("medusa.env", Verb.UPDATE, "update", diff="+A=********\n"),)
    outcome = tenant_outcome(TenantPlanView(steps, fingerprint(steps)))
    assert SECRET not in json.dumps(dict(outcome.data))


def test_cli_plan_rejects_an_unknown_format() -> None:
    from omni.cli.app import run

    assert run(["--inventory", str(INVENTORY), "plan", "--format", "yaml"]) == 2
