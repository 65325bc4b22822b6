"""Use case: ``omni restart``: restart tenants' containers, each behind its health gate.

Per tenant, under its lock: restart Redis (waiting until it accepts connections) and/or the
app, then the health gate through nginx; only then is the tenant done. Rolls through the
fleet within each host's ``concurrency``; stops at the first tenant that fails unless
``keep_going`` (the rest are reported ``not_run``, untouched). Other tenants' containers
are never touched, so their traffic is not interrupted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from omni.audit import AuditContext
from omni.engine.engine import NullProgress
from omni.errors import StepFailed
from omni.fleet.command import run_command
from omni.fleet.runner import FleetOptions, FleetProgress, Outcome, check_parallel
from omni.fleet.selection import select_tenants
from omni.inventory.loader import load_inventory
from omni.output.result import Result
from omni.resources.containers import wait_ready
from omni.tenant.existing import existing_spec
from omni.tenant.health import health_gate
from omni.tenant.network import redis_probe
from omni.usecases.sessions import SessionOptions

if TYPE_CHECKING:
    from omni.hosts.session import HostSession
    from omni.inventory.models import Tenant

COMMAND = "restart"
Service = Literal["app", "redis", "all"]
REDIS_READY_SECONDS = 30.0


@dataclass(frozen=True)
class RestartRequest:
    slugs: Sequence[str] = ()
    every: bool = False
    service: Service = "app"
    parallel: int | None = None
    keep_going: bool = False
    lock_wait_seconds: float = 0.0


def restart(
    request: RestartRequest,
    inventory_path: Path,
    *,
    progress: FleetProgress | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    audit: AuditContext | None = None,
    sessions: SessionOptions | None = None,
) -> Result:
    """See the module docstring. Appends, with ``audit``, one
    entry to the audit log of each host it changed tenants on."""
    started = audit.now() if audit else clock()
    check_parallel(request.parallel)
    inventory = load_inventory(inventory_path)
    tenants = select_tenants(inventory, request.slugs, every=request.every,
                             require_choice=True)

    def restart_one(session: HostSession, tenant: Tenant) -> Outcome:
        spec = existing_spec(session, inventory.host(tenant.host), tenant, clock())
        docker = session.docker()
        names = {
            "redis": [spec.redis_container],
            "app": [spec.app_container],
            "all": [spec.redis_container, spec.app_container],  # Redis first: the app needs it
        }[request.service]
        for name in names:
            if docker.container(name) is None:
                raise StepFailed(f"container {name} does not exist; run "
                                 f"`omni tenant create {tenant.slug}`", tenant=tenant.slug)
        for name in names:
            docker.restart(name)
            if name == spec.redis_container:
                wait_ready(session, name, redis_probe(spec), REDIS_READY_SECONDS)
        health = health_gate(spec, NullProgress())
        return Outcome("ok", f"restarted {', '.join(names)}; healthy in {health['seconds']}s",
                       {"restarted": names})

    options = FleetOptions(parallel=request.parallel, lock=True,
                           lock_wait_seconds=request.lock_wait_seconds,
                           keep_going=request.keep_going, purpose=COMMAND)
    return run_command(COMMAND, inventory, tenants, restart_one, options, failure=StepFailed,
                       started=started, mutating=True, data={"service": request.service},
                       progress=progress, audit=audit, sessions=sessions)
