"""Use case: ``omni health-check``: every check of every tenant, read-only.

One session per host for the whole run; tenants checked concurrently within each host's
``check_concurrency``; no lock taken and nothing written. Each host's app containers are
inspected once for all its tenants. A host that cannot be reached marks its
tenants ``unreachable`` while the other hosts' tenants are still checked.
Exit: 0 all pass (warnings allowed), 5 a host unreachable, else 1 when any check failed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from omni.errors import CheckFailed
from omni.fleet.command import run_command
from omni.fleet.per_host import PerHost
from omni.fleet.runner import FleetOptions, FleetProgress, Outcome, Status
from omni.fleet.selection import select_tenants
from omni.inventory.loader import load_inventory
from omni.output.result import Result
from omni.tenant.checks import CHECKS, ContainerSnapshot, run_checks
from omni.tenant.existing import existing_spec
from omni.tenant.spec import app_container_name

if TYPE_CHECKING:
    from omni.hosts.session import HostSession
    from omni.inventory.models import Tenant

COMMAND = "health-check"


@dataclass(frozen=True)
class HealthCheckRequest:
    slugs: Sequence[str] = ()
    host: str | None = None


def health_check(
    request: HealthCheckRequest,
    inventory_path: Path,
    *,
    progress: FleetProgress | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Result:
    inventory = load_inventory(inventory_path)
    tenants = select_tenants(inventory, request.slugs, host=request.host)
    snapshots = PerHost(lambda session: ContainerSnapshot(
        session,
        [app_container_name(t.slug) for t in tenants if t.host == session.name],
        [t.image for t in tenants if t.host == session.name],
    ))

    def check_one(session: HostSession, tenant: Tenant) -> Outcome:
        spec = existing_spec(session, inventory.host(tenant.host), tenant, clock())
        checks = run_checks(session, spec, containers=lambda: snapshots.get(session))
        failing = [c for c in checks if c.status == "fail"]
        warning = [c for c in checks if c.status == "warn"]
        worst = failing or warning
        detail = "; ".join(f"{c.name}: {c.detail}" for c in worst) or "all checks pass"
        status: Status = "failed" if failing else "warning" if warning else "ok"
        return Outcome(status, detail, {"checks": [c.to_dict() for c in checks]})

    return run_command(COMMAND, inventory, tenants, check_one, FleetOptions(read_only=True),
                       failure=CheckFailed, started=clock(), mutating=False,
                       data={"checks": list(CHECKS)}, progress=progress,
                       unreachable_first=True)
