"""A fleet command from start to result, once: sessions, the runner, the result, the audit.

Every fleet use case (health-check, migrate-all, restart, certs renew, deploy, rollback,
backup) selects its tenants, writes its per-tenant work, and calls :func:`run_command`,
which opens one session per host, runs the work through :func:`run_fleet`, lets the
command finish host-wide work on the same sessions (e.g. one nginx reload per host),
builds the :class:`Result` and, for a run that may change hosts, appends the audit entries
before the sessions close.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from omni.errors import OmniError
from omni.fleet.report import fleet_result
from omni.fleet.runner import FleetOptions, FleetProgress, TenantResult, TenantWork, run_fleet
from omni.output.result import Result
from omni.usecases.sessions import SessionOptions

if TYPE_CHECKING:
    from omni.audit import AuditContext
    from omni.hosts.session import SessionPool
    from omni.inventory.loader import Inventory
    from omni.inventory.models import Tenant

Finish = Callable[["SessionPool", list[TenantResult]], list[TenantResult]]
Data = Mapping[str, Any] | Callable[[list[TenantResult]], Mapping[str, Any]]


def run_command(
    command: str,
    inventory: Inventory,
    tenants: Sequence[Tenant],
    work: TenantWork,
    options: FleetOptions,
    *,
    failure: type[OmniError],
    started: datetime,
    mutating: bool,
    data: Data | None = None,
    progress: FleetProgress | None = None,
    audit: AuditContext | None = None,
    sessions: SessionOptions | None = None,
    finish: Finish | None = None,
    changed: Callable[[list[TenantResult]], bool] | None = None,
    unreachable_first: bool = False,
) -> Result:
    """Run ``work`` over ``tenants`` and return the command's result.

    ``mutating``: the run may change hosts (not a dry run, not a check); then ``changed``
    defaults to "a tenant ended ok or failed" and each touched host's audit log gets an
    entry. ``finish`` runs after every tenant, on the same sessions, and may replace
    results. ``data`` may depend on the results.
    """
    with (sessions or SessionOptions()).pool(inventory.hosts) as pool:
        results = run_fleet(tenants, inventory.hosts, work, pool, options, progress)
        if finish is not None:
            results = finish(pool, results)
        if changed is None:
            did_change = mutating and any(r.status in {"ok", "failed"} for r in results)
        else:
            did_change = changed(results)
        body = data(results) if callable(data) else data
        result = fleet_result(command, results, failure, data=body, changed=did_change,
                              unreachable_first=unreachable_first)
        if audit is not None and mutating:
            audit.record_fleet(pool, command=command, results=results, result=result,
                               started=started)
    return result
