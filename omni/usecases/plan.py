"""Use case: ``omni plan``: the fleet's dry run. Read-only, secrets masked.

For every selected tenant, the plan ``omni tenant create SLUG --dry-run`` would make (the
same :func:`omni.usecases.tenant_create.plan_tenant`, ports not reserved), run through the
fleet runner with no lock; each plan is sorted into what a reviewer looks for: the tenant
missing on its host, drifted files (env, Redis config, vhost: with their masked diffs),
images that differ, a certificate due, other changes. With no tenant named, each host is
also scanned for what no tenant file claims: containers labelled ``omni.tenant`` and
databases named ``tenant_*`` that belong to no tenant of that host.

Fingerprints: each tenant's ``plan_fingerprint`` is exactly the one ``omni tenant create
SLUG --expect-plan`` checks. The fleet fingerprint is sha256 over the sorted lines
``SLUG=FINGERPRINT`` of every planned tenant (first 16 hex digits), so it changes when any
tenant's plan changes, and it is ``None`` when a tenant could not be planned (nothing to
approve). ``expect_plan`` refuses (``InvalidInput``, exit 2) a fleet plan whose
fingerprint differs from the reviewed one: the gate an automated apply runs first.

Exit: 0 when every tenant was planned (changes pending or not), 5 when a host is
unreachable, 3 when a tenant could not be planned (e.g. its image is not on the host).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from omni.engine.step import Step, Verb, redacted
from omni.errors import InvalidInput, OmniError, StepFailed
from omni.fleet.report import fleet_result
from omni.fleet.runner import FleetOptions, FleetProgress, Outcome, Sessions, run_fleet
from omni.fleet.selection import select_tenants
from omni.inventory.loader import Inventory, load_inventory
from omni.output.result import Result
from omni.usecases.sessions import SessionOptions

if TYPE_CHECKING:
    from omni.hosts.session import HostSession
    from omni.inventory.models import Tenant

COMMAND = "plan"
# Resources whose plan is a file diff a reviewer reads.
FILE_RESOURCES = ("medusa.env", "redis.config", "nginx.vhost")
APP_RESOURCE = "medusa.app"
CERTIFICATE_RESOURCE = "acme.certificate"
SECRETS_RESOURCE = "tenant.secrets"
CONTAINER_LABEL = "omni.tenant"
DATABASE_PREFIX = "tenant_"  # see omni.tenant.spec.TenantSpec.db_name

State = Literal["in_sync", "changes", "missing"]


@dataclass(frozen=True)
class PlanRequest:
    slugs: Sequence[str] = ()
    host: str | None = None
    expect_plan: str | None = None  # the reviewed fleet fingerprint


@dataclass(frozen=True)
class TenantPlanView:
    """One tenant's plan as ``omni plan`` shows it: masked steps and their fingerprint."""

    steps: tuple[Step, ...]
    fingerprint: str


TenantPlanner = Callable[["HostSession", Inventory, "Tenant", datetime], TenantPlanView]
HostScanner = Callable[["HostSession", str, Sequence[str]], dict[str, Any]]


def create_plan(
    session: HostSession, inventory: Inventory, tenant: Tenant, now: datetime
) -> TenantPlanView:
    """``tenant create --dry-run``'s plan for ``tenant``, masked with its own secrets."""
    from omni.usecases.tenant_create import plan_tenant

    planned = plan_tenant(session, inventory, tenant, reserve=False, now=now)
    redact = planned.spec.redactor().text
    steps = tuple(redacted(step, redact) for step in planned.plan.steps)
    return TenantPlanView(steps, planned.plan.fingerprint())


@dataclass(frozen=True)
class Review:
    """A tenant's steps sorted into what a reviewer looks for. Pure."""

    state: State
    files: list[dict[str, Any]] = field(default_factory=list)
    images: list[dict[str, Any]] = field(default_factory=list)
    certificate: str | None = None
    other: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, steps: Sequence[Step]) -> Review:
        changing = [s for s in steps if s.changing]
        missing = any(s.resource == SECRETS_RESOURCE and s.verb is Verb.CREATE for s in steps)
        state: State = "missing" if missing else "changes" if changing else "in_sync"
        review = cls(state)
        for step in changing:
            if step.resource in FILE_RESOURCES:
                review.files.append({"resource": step.resource, "verb": step.verb.value,
                                     "summary": step.summary, "diff": step.diff})
            elif step.resource == CERTIFICATE_RESOURCE:
                object.__setattr__(review, "certificate", step.summary)
            if step.resource == APP_RESOURCE:
                for change in step.changes:
                    if change.field == "image":
                        review.images.append({"before": change.before, "after": change.after})
            if step.resource not in (*FILE_RESOURCES, CERTIFICATE_RESOURCE):
                review.other.append(f"{step.verb.value} {step.resource}: {step.summary}")
        return review

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "files": self.files, "images": self.images,
                "certificate_due": self.certificate, "other": self.other}


def tenant_outcome(view: TenantPlanView) -> Outcome:
    """The fleet runner's result for one planned tenant (always ``ok``: planning worked)."""
    review = Review.of(view.steps)
    changing = [s for s in view.steps if s.changing]
    detail = {
        "in_sync": "in sync: nothing to do",
        "missing": f"missing on its host: {len(changing)} step(s) to create it",
        "changes": f"{len(changing)} change(s)",
    }[review.state]
    return Outcome("ok", detail, {
        "plan_fingerprint": view.fingerprint,
        "changes": len(changing),
        **review.to_dict(),
        "steps": [s.to_dict() for s in changing],
    })


def fleet_fingerprint(fingerprints: Mapping[str, str | None]) -> str | None:
    """sha256 over the sorted ``SLUG=FINGERPRINT`` lines (16 hex digits); ``None`` if a
    tenant has no fingerprint (could not be planned)."""
    if any(fp is None for fp in fingerprints.values()):
        return None
    lines = sorted(f"{slug}={fp}" for slug, fp in fingerprints.items())
    return hashlib.sha256(("\n".join(lines) + "\n").encode()).hexdigest()[:16]


def database_name(slug: str) -> str:
    return DATABASE_PREFIX + slug.replace("-", "_")


def scan_host(session: HostSession, host: str, claimed: Sequence[str]) -> dict[str, Any]:
    """Containers labelled ``omni.tenant`` and ``tenant_*`` databases on ``host`` that none
    of the ``claimed`` slugs (the tenants whose file names this host) owns. Reads only."""
    containers = [
        {"name": c.name, "tenant": c.labels.get(CONTAINER_LABEL, ""), "image": c.image,
         "running": c.running}
        for c in session.docker().list_containers({CONTAINER_LABEL: None})
        if c.labels.get(CONTAINER_LABEL, "") not in claimed
    ]
    owned = {database_name(slug) for slug in claimed}
    with session.postgres() as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s ORDER BY datname",
            (DATABASE_PREFIX.replace("_", "\\_") + "%",),
        ).fetchall()
    databases = [str(row[0]) for row in rows if str(row[0]) not in owned]
    return {"host": host, "containers": containers, "databases": databases, "error": None}


def plan_fleet(
    request: PlanRequest,
    inventory_path: Path,
    *,
    progress: FleetProgress | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    sessions: SessionOptions | None = None,
    planner: TenantPlanner = create_plan,
    scanner: HostScanner = scan_host,
    pool: Sessions | None = None,
) -> Result:
    """See the module docstring. ``planner``, ``scanner`` and ``pool`` are for tests."""
    inventory = load_inventory(inventory_path)
    tenants = select_tenants(inventory, request.slugs, host=request.host)
    now = clock()

    def plan_one(session: HostSession, tenant: Tenant) -> Outcome:
        return tenant_outcome(planner(session, inventory, tenant, now))

    options = FleetOptions(lock=False, keep_going=True, purpose=COMMAND)
    if pool is not None:
        results = run_fleet(tenants, inventory.hosts, plan_one, pool, options, progress)
        unclaimed = _scan(inventory, request, pool, scanner)
    else:
        with (sessions or SessionOptions()).pool(inventory.hosts) as own:
            results = run_fleet(tenants, inventory.hosts, plan_one, own, options, progress)
            unclaimed = _scan(inventory, request, own, scanner)
    fingerprint = fleet_fingerprint(
        {r.slug: r.data.get("plan_fingerprint") if r.status == "ok" else None for r in results}
    )
    if request.expect_plan and request.expect_plan != fingerprint:
        raise InvalidInput(
            f"--expect-plan: the fleet plan changed since it was reviewed (expected "
            f"{request.expect_plan}, now {fingerprint}); review it again", field="expect_plan")
    states = {"in_sync": 0, "changes": 0, "missing": 0}
    for result in results:
        if result.status == "ok":
            states[str(result.data["state"])] += 1
    data = {
        "fleet_fingerprint": fingerprint,
        "states": states,
        "unclaimed": unclaimed,
        "generated_at": now.isoformat(timespec="seconds"),
    }
    return fleet_result(COMMAND, results, StepFailed, data=data, unreachable_first=True)


def _scan(
    inventory: Inventory, request: PlanRequest, pool: Sessions, scanner: HostScanner
) -> list[dict[str, Any]]:
    """Each host's unclaimed containers and databases; only for a whole-fleet plan (no
    slug named). A host that cannot be scanned reports its error instead."""
    if request.slugs:
        return []
    hosts = [request.host] if request.host else sorted(inventory.hosts)
    found = []
    for host in hosts:
        claimed = sorted(t.slug for t in inventory.tenants.values() if t.host == host)
        try:
            found.append(scanner(pool.get(host), host, claimed))
        except OmniError as exc:
            found.append({"host": host, "containers": [], "databases": [],
                          "error": exc.to_dict()})
    return found


# -- --expect-plan for commands whose plan is their dry run ------------------------------

Reviewed = Callable[[Result], object]


def reviewed_fingerprint(reviewed: object) -> str:
    """16 hex digits of sha256 over ``reviewed`` as canonical JSON: what a reviewer saw in a
    dry run (each command picks the fields, leaving out timings and apply-time detail)."""
    payload = json.dumps(reviewed, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def tenant_rows(*keys: str) -> Reviewed:
    """A ``Reviewed`` for fleet commands: ``keys`` of each row in ``data["tenants"]``."""
    def reviewed(result: Result) -> object:
        return [{k: row.get(k) for k in keys} for row in result.data.get("tenants", [])]
    return reviewed


def apply_reviewed(
    run: Callable[[bool], Result],
    *,
    dry_run: bool,
    expect_plan: str | None,
    reviewed: Reviewed,
    command: str,
) -> Result:
    """Run a command whose plan is its own dry run, honouring ``--expect-plan``.

    ``run(dry_run)`` runs the command. A dry run's result gets ``data["plan_fingerprint"]``
    (``reviewed_fingerprint(reviewed(result))``). A real run with ``expect_plan`` first
    re-plans (a dry run: reads only) and raises ``InvalidInput`` (exit 2, field
    ``expect_plan``) when the fingerprint differs, before anything changes; then the real
    run, whose result carries the fingerprint it applied. Without ``expect_plan`` a real run
    is just ``run(False)`` (the CLI for people; Windmill's steps always pass one).
    """
    if dry_run:
        result = run(True)
        result.data["plan_fingerprint"] = reviewed_fingerprint(reviewed(result))
        return result
    if expect_plan:
        planned = run(True)
        now = reviewed_fingerprint(reviewed(planned)) if planned.ok else "none (the plan failed)"
        if now != expect_plan:
            raise InvalidInput(
                f"--expect-plan: the {command} plan changed since it was reviewed (expected "
                f"{expect_plan}, now {now}); review it again", field="expect_plan")
    result = run(False)
    result.data["plan_fingerprint"] = expect_plan
    return result
