"""Use case: ``omni migrate-all``: Medusa migrations across the fleet, each behind a dump.

Per tenant, under its lock: skip when migrations are already recorded for its image (unless
``force``); else a verified ``pg_dump`` (see :mod:`omni.tenant.dumps`), ``medusa db:migrate``
of its image in a one-off container, the health gate, then dump retention. A failure is
that tenant's result, with the dump to restore from; the others go on.
``dry_run`` says, per tenant in run order, migrate / skip / unreachable and changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from omni.audit import AuditContext
from omni.engine.engine import NullProgress
from omni.errors import OmniError, StepFailed
from omni.fleet.command import run_command
from omni.fleet.runner import FleetOptions, FleetProgress, Outcome, check_parallel
from omni.fleet.selection import select_tenants
from omni.inventory.loader import load_inventory
from omni.output.result import Result
from omni.tenant.dumps import prune_dumps, take_dump
from omni.tenant.existing import existing_spec
from omni.tenant.health import health_gate
from omni.tenant.resources import migrations_resource
from omni.usecases.plan import apply_reviewed, tenant_rows
from omni.usecases.sessions import SessionOptions

if TYPE_CHECKING:
    from omni.hosts.session import HostSession
    from omni.inventory.models import Tenant

COMMAND = "migrate-all"


@dataclass(frozen=True)
class MigrateAllRequest:
    slugs: Sequence[str] = ()
    host: str | None = None
    parallel: int | None = None
    dry_run: bool = False
    force: bool = False
    lock_wait_seconds: float = 0.0
    expect_plan: str | None = None  # the reviewed dry run's plan_fingerprint


def migrate_all(
    request: MigrateAllRequest,
    inventory_path: Path,
    *,
    progress: FleetProgress | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    audit: AuditContext | None = None,
    sessions: SessionOptions | None = None,
) -> Result:
    """See the module docstring. A real run (not a dry run) appends, with ``audit``, one
    entry to the audit log of each host it changed tenants on. With ``expect_plan`` it
    refuses (exit 2) unless a fresh dry run has that fingerprint (per tenant: migrate or
    skip, for which image); a dry run's result carries ``plan_fingerprint``."""
    check_parallel(request.parallel)

    def run(dry_run: bool) -> Result:
        return _migrate_all(replace(request, dry_run=dry_run), inventory_path,
                            progress=progress, clock=clock, audit=audit, sessions=sessions)

    return apply_reviewed(run, dry_run=request.dry_run, expect_plan=request.expect_plan,
                          reviewed=tenant_rows("tenant", "host", "status", "detail"),
                          command=COMMAND)


def _migrate_all(
    request: MigrateAllRequest,
    inventory_path: Path,
    *,
    progress: FleetProgress | None,
    clock: Callable[[], datetime],
    audit: AuditContext | None,
    sessions: SessionOptions | None,
) -> Result:
    started = audit.now() if audit else clock()
    inventory = load_inventory(inventory_path)
    tenants = select_tenants(inventory, request.slugs, host=request.host)

    def migrate_one(session: HostSession, tenant: Tenant) -> Outcome:
        spec = existing_spec(session, inventory.host(tenant.host), tenant, clock())
        migrations = migrations_resource(spec)
        step = migrations.plan(migrations.observe(session))[0]
        if not migrations.command:  # a plain app: nothing to migrate, even with --force
            return Outcome("skipped", step.summary)
        if not step.changing and not request.force:
            return Outcome("skipped", f"migrations already recorded for {tenant.image}")
        if request.dry_run:
            return Outcome("ok", f"would dump, then migrate for {tenant.image}",
                           {"action": "migrate"})
        dump = take_dump(session.transport, spec.host, tenant.slug, spec.db_name,
                         user=spec.host.postgres.admin_user,
                         password=session.admin_password(), now=clock())
        try:
            migrations.apply(session, step)
            health_gate(spec, NullProgress())
        except OmniError as exc:
            return Outcome(
                "failed", f"{exc.message}; restore from {dump.path}", {"dump": dump.path},
                error=StepFailed(f"{tenant.slug}: {exc.message}; restore from {dump.path}",
                                 tenant=tenant.slug, dump=dump.path),
            )
        pruned = prune_dumps(session.transport, spec.host, tenant.slug, now=clock(),
                             protect=dump.path)
        return Outcome("ok", f"migrated for {tenant.image}; healthy",
                       {"dump": dump.path, "pruned_dumps": pruned})

    options = FleetOptions(parallel=request.parallel, lock=not request.dry_run,
                           lock_wait_seconds=request.lock_wait_seconds,
                           keep_going=True, purpose=COMMAND)
    return run_command(COMMAND, inventory, tenants, migrate_one, options, failure=StepFailed,
                       started=started, mutating=not request.dry_run,
                       data={"dry_run": request.dry_run, "force": request.force},
                       progress=progress, audit=audit, sessions=sessions)
