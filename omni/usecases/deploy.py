"""Use cases: ``omni deploy`` and ``omni rollback``: zero-downtime releases.

Both run the blue/green switch of :mod:`omni.releases.switch` for each tenant under its
lock, through the fleet runner (each host's ``concurrency``, stop at the first failure
unless ``keep_going``). ``deploy`` takes a new image and migrates; ``rollback`` goes back to
the previous release (or the one named) from the ledger, without migrations, optionally
restoring the dump taken before the release it undoes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from omni import validation
from omni.audit import AuditContext
from omni.errors import InvalidInput, StepFailed
from omni.fleet.command import run_command
from omni.fleet.runner import (
    FleetOptions,
    FleetProgress,
    Outcome,
    TenantResult,
    check_parallel,
)
from omni.fleet.selection import select_tenants
from omni.inventory.loader import load_inventory
from omni.output.result import Result
from omni.releases import ledger
from omni.releases.switch import SwitchReport, SwitchRequest, switch_release
from omni.usecases.sessions import SessionOptions

if TYPE_CHECKING:
    from omni.hosts.session import HostSession
    from omni.inventory.models import Tenant


@dataclass(frozen=True)
class DeployRequest:
    slugs: Sequence[str] = ()
    every: bool = False
    image: str = ""
    parallel: int | None = None
    keep_going: bool = False
    dry_run: bool = False
    expect_plan: str | None = None
    lock_wait_seconds: float = 0.0
    who: str = ""


@dataclass(frozen=True)
class RollbackRequest:
    slug: str
    to_release: str | None = None
    restore_db: bool | None = None  # None: not said (refused when the undone release migrated)
    dry_run: bool = False
    lock_wait_seconds: float = 0.0
    who: str = ""
    expect_plan: str | None = None  # the reviewed dry run's plan_fingerprint


def _outcome(report: SwitchReport) -> Outcome:
    status = {"succeeded": "ok", "planned": "ok", "failed": "failed"}.get(report.status, "ok")
    return Outcome(status, report.detail, report.data, report.error)  # type: ignore[arg-type]


def _plan_fingerprint(results: Sequence[dict[str, object]]) -> str:
    """What a reviewer saw in the dry run: per tenant, image change, config and vhost."""
    reviewed = [
        {k: r.get(k) for k in ("tenant", "image", "config_fingerprint", "migrations",
                               "vhost_diff")}
        for r in results
    ]
    return hashlib.sha256(json.dumps(reviewed, sort_keys=True, default=str).encode()
                          ).hexdigest()[:16]


def deploy(
    request: DeployRequest,
    inventory_path: Path,
    *,
    progress: FleetProgress | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    audit: AuditContext | None = None,
    sessions: SessionOptions | None = None,
) -> Result:
    """See the module docstring; a real run appends to each touched host's audit log."""
    check_parallel(request.parallel)
    try:
        validation.check_image(request.image)
    except ValueError as exc:
        raise InvalidInput(f"--image: {exc}", field="image") from None
    inventory = load_inventory(inventory_path)
    tenants = select_tenants(inventory, request.slugs, every=request.every,
                             require_choice=True)
    if request.expect_plan and not request.dry_run:
        planned = _run(inventory_path, tenants, request, dry_run=True, clock=clock,
                       sessions=sessions)
        fingerprint = _plan_fingerprint(planned.data["tenants"])
        if fingerprint != request.expect_plan:
            raise InvalidInput(
                f"--expect-plan: the plan changed since it was reviewed (expected "
                f"{request.expect_plan}, now {fingerprint}); review it again",
                field="expect_plan")
    result = _run(inventory_path, tenants, request, dry_run=request.dry_run, clock=clock,
                  progress=progress, audit=audit, sessions=sessions)
    result.data["plan_fingerprint"] = _plan_fingerprint(result.data["tenants"]) \
        if request.dry_run else request.expect_plan
    return result


def _run(inventory_path: Path, tenants: Sequence[Tenant], request: DeployRequest, *,
         dry_run: bool, clock: Callable[[], datetime],
         progress: FleetProgress | None = None, audit: AuditContext | None = None,
         sessions: SessionOptions | None = None) -> Result:
    inventory = load_inventory(inventory_path)
    started = audit.now() if audit else clock()

    def deploy_one(session: HostSession, tenant: Tenant) -> Outcome:
        if tenant.image == request.image and not dry_run:
            return Outcome("skipped", f"already on {request.image}")
        switch = SwitchRequest("deploy", request.image, request.who, dry_run=dry_run)
        return _outcome(switch_release(session, inventory, tenant, switch, clock))

    options = FleetOptions(parallel=request.parallel, lock=not dry_run,
                           keep_going=request.keep_going, purpose="deploy",
                           lock_wait_seconds=request.lock_wait_seconds)
    return run_command("deploy", inventory, tenants, deploy_one, options, failure=StepFailed,
                       started=started, mutating=not dry_run,
                       data={"dry_run": dry_run, "image": request.image},
                       progress=progress, audit=audit, sessions=sessions,
                       changed=lambda results: not dry_run and any(
                           r.status == "ok" for r in results))


def rollback(
    request: RollbackRequest,
    inventory_path: Path,
    *,
    progress: FleetProgress | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    audit: AuditContext | None = None,
    sessions: SessionOptions | None = None,
) -> Result:
    """See the module docstring; a real run appends to the host's audit log. With
    ``expect_plan`` it refuses (exit 2) unless a fresh dry run has that fingerprint (the
    target release, the releases undone, image, configuration, vhost diff, restore_db);
    a dry run's result carries ``plan_fingerprint``."""
    from omni.usecases.plan import apply_reviewed

    rows = ("tenant", "host", "status", "detail", "image", "config_fingerprint", "to",
            "undone", "vhost_diff")

    def reviewed(result: Result) -> object:
        return {"restore_db": request.restore_db, "tenants": [
            {k: row.get(k) for k in rows} for row in result.data.get("tenants", [])]}

    def run(dry_run: bool) -> Result:
        return _rollback(dataclasses.replace(request, dry_run=dry_run), inventory_path,
                         progress=progress, clock=clock, audit=audit, sessions=sessions)

    return apply_reviewed(run, dry_run=request.dry_run, expect_plan=request.expect_plan,
                          reviewed=reviewed, command="rollback")


def _rollback(
    request: RollbackRequest,
    inventory_path: Path,
    *,
    progress: FleetProgress | None,
    clock: Callable[[], datetime],
    audit: AuditContext | None,
    sessions: SessionOptions | None,
) -> Result:
    started = audit.now() if audit else clock()
    inventory = load_inventory(inventory_path)
    tenants = select_tenants(inventory, [request.slug])
    refusal: list[InvalidInput] = []

    def rollback_one(session: HostSession, tenant: Tenant) -> Outcome:
        host = inventory.host(tenant.host)
        history = ledger.releases(session.transport, host, tenant.slug)
        undone = ledger.current(history)
        target = _target(history, undone, request.to_release)
        changes = ledger.schema_changes_since(history, target)
        restore = request.restore_db
        if restore is None and changes:
            refusal.append(InvalidInput(
                f"--restore-db: release {changes[-1].release} ({changes[-1].image}) changed "
                f"the database schema since {target.release}; pass --restore-db to restore "
                "the database from before it (data written since is lost) or "
                "--no-restore-db to keep today's data", field="restore_db"))
            return Outcome("failed", refusal[-1].message)
        # The dump taken just before the first schema change since the target (else the
        # release being undone's own dump) is the database as the target knew it.
        dump = changes[0].dump if changes else (undone.dump if undone else None)
        if restore and dump is None:
            raise InvalidInput(f"--restore-db: no dump was taken since {target.release}",
                               field="restore_db")
        switch = SwitchRequest(
            "rollback", target.image, request.who, run_migrations=False,
            restore_dump=dump if restore else None, dry_run=request.dry_run)
        report = switch_release(session, inventory, tenant, switch, clock)
        report.data["undone"] = [r.release for r in history[history.index(target) + 1:]]
        report.data["to"] = target.release
        return _outcome(report)

    def refuse(pool: object, results: list[TenantResult]) -> list[TenantResult]:
        if refusal:
            raise refusal[0]
        return results

    options = FleetOptions(lock=not request.dry_run, purpose="rollback",
                           lock_wait_seconds=request.lock_wait_seconds)
    return run_command("rollback", inventory, tenants, rollback_one, options,
                       failure=StepFailed, started=started, mutating=not request.dry_run,
                       data={"dry_run": request.dry_run}, progress=progress, audit=audit,
                       sessions=sessions, finish=refuse)


def _target(history: list[ledger.Release], undone: ledger.Release | None,
            to_release: str | None) -> ledger.Release:
    """The release to go back to: the one named, else the last live one before ``undone``."""
    live = [r for r in history if r.live_once]
    if to_release is not None:
        named = [r for r in history if r.release == to_release]
        if not named:
            known = ", ".join(r.release for r in live) or "none"
            raise InvalidInput(f"--to: no release {to_release!r} (live releases: {known})",
                               field="to")
        return named[0]
    if undone is None or len(live) < 2:
        raise InvalidInput("rollback: no earlier release to go back to (see `omni releases`)",
                           field="slug")
    return live[live.index(undone) - 1]


def list_releases(slug: str, inventory_path: Path) -> Result:
    """``omni releases SLUG``: the tenant's ledger, oldest first. Read-only."""
    inventory = load_inventory(inventory_path)
    tenant = select_tenants(inventory, [slug])[0]
    from omni.hosts.session import HostSession

    with HostSession(inventory.host(tenant.host)) as session:
        history = ledger.releases(session.transport, session.host, tenant.slug)
    live = ledger.current(history)
    return Result.success("releases", data={
        "tenant": slug, "host": tenant.host, "current": live.release if live else None,
        "releases": [r.to_dict() for r in history]})
