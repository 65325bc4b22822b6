"""Use case: ``omni certs renew``: renew only the certificates that are due.

Per tenant, under its lock: plan its certificate (the same resource and ACME path as
``tenant create``); nothing to do when it is valid, outside the renewal window and covers
the tenant's domains. A due one is issued, swapped in and tested with ``nginx -t``, but not
reloaded. Then each host that got a new certificate reloads nginx once (under the host's
nginx lock) and every renewed tenant's served certificate is checked to be the new one.
Meant to run daily: a run with nothing due touches nothing and says so.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from omni.audit import AuditContext
from omni.errors import StepFailed
from omni.fleet.command import run_command
from omni.fleet.runner import FleetOptions, FleetProgress, Outcome, TenantResult
from omni.fleet.selection import select_tenants
from omni.inventory.loader import Inventory, load_inventory
from omni.nginx import NGINX_LOCK, NGINX_LOCK_WAIT_SECONDS, nginx_error_line, wait_live
from omni.output.result import Result
from omni.resources.certificate import CertificateResource
from omni.resources.vhost import leaf_der
from omni.tenant.existing import existing_spec
from omni.usecases.plan import apply_reviewed, tenant_rows
from omni.usecases.sessions import SessionOptions

if TYPE_CHECKING:
    from omni.hosts.session import HostSession, SessionPool
    from omni.inventory.models import Tenant

COMMAND = "certs renew"


@dataclass(frozen=True)
class RenewRequest:
    slugs: Sequence[str] = ()
    host: str | None = None
    dry_run: bool = False
    lock_wait_seconds: float = 0.0
    expect_plan: str | None = None  # the reviewed dry run's plan_fingerprint


def renew_certificates(
    request: RenewRequest,
    inventory_path: Path,
    *,
    progress: FleetProgress | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    audit: AuditContext | None = None,
    sessions: SessionOptions | None = None,
) -> Result:
    """See the module docstring. A real run (not a dry run) appends, with ``audit``, one
    entry to the audit log of each host it changed tenants on. With ``expect_plan`` it
    refuses (exit 2) unless a fresh dry run has that fingerprint (which certificates are
    due, and why); a dry run's result carries ``plan_fingerprint``."""
    def run(dry_run: bool) -> Result:
        return _renew(dataclasses.replace(request, dry_run=dry_run), inventory_path,
                      progress=progress, clock=clock, audit=audit, sessions=sessions)

    return apply_reviewed(run, dry_run=request.dry_run, expect_plan=request.expect_plan,
                          reviewed=tenant_rows("tenant", "host", "status", "detail"),
                          command=COMMAND)


def _renew(
    request: RenewRequest,
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
    renewed: dict[str, CertificateResource] = {}

    def renew_one(session: HostSession, tenant: Tenant) -> Outcome:
        spec = existing_spec(session, inventory.host(tenant.host), tenant, clock())
        certificate = CertificateResource(spec, reload=False)
        step = certificate.plan(certificate.observe(session))[0]
        if not step.changing:
            return Outcome("skipped", step.summary)
        if request.dry_run:
            return Outcome("ok", f"would {step.summary}", {"due": True})
        certificate.apply(session, step)
        renewed[tenant.slug] = certificate
        return Outcome("ok", step.summary, {"renewed": True})

    options = FleetOptions(lock=not request.dry_run, keep_going=True, purpose=COMMAND,
                           lock_wait_seconds=request.lock_wait_seconds)

    def verdict(results: list[TenantResult]) -> dict[str, object]:
        due = sum(1 for r in results if r.status == "ok")
        if due:
            said = f"{due} certificate(s) {'due' if request.dry_run else 'renewed'}"
        else:
            said = ("nothing to renew: every certificate is valid, outside its renewal "
                    "window and covers its domains")
        return {"dry_run": request.dry_run, "verdict": said}

    return run_command(
        COMMAND, inventory, tenants, renew_one, options, failure=StepFailed, started=started,
        mutating=not request.dry_run, data=verdict, progress=progress, audit=audit,
        sessions=sessions, changed=lambda results: bool(renewed),
        finish=lambda pool, results: (
            _reload_and_verify(inventory, pool, results, renewed) if renewed else results),
    )


def _reload_and_verify(
    inventory: Inventory,
    pool: SessionPool,
    results: list[TenantResult],
    renewed: dict[str, CertificateResource],
) -> list[TenantResult]:
    """One nginx reload per host that got a new certificate, then each renewed tenant's
    served certificate must be the new one; a tenant for which it is not ends ``failed``."""
    problems: dict[str, str] = {}
    for host_name in sorted({inventory.tenants[slug].host for slug in renewed}):
        session = pool.get(host_name)
        nginx = inventory.host(host_name).nginx
        with session.lock(NGINX_LOCK, wait_seconds=NGINX_LOCK_WAIT_SECONDS):
            reloaded = session.transport.run(nginx.reload_command, check=False)
            for slug, certificate in renewed.items():
                if inventory.tenants[slug].host != host_name:
                    continue
                if not reloaded.ok:
                    problems[slug] = f"nginx reload failed: {nginx_error_line(reloaded)}"
                    continue
                leaf = leaf_der(session.transport.read_file(certificate.spec.fullchain_path))
                reason = wait_live(partial(certificate.serving, leaf),
                                   certificate.reload_options)
                if reason is not None:
                    problems[slug] = f"renewed, but after the reload: {reason}"
    updated = []
    for result in results:
        if result.slug in problems:
            error = StepFailed(problems[result.slug], tenant=result.slug)
            result = dataclasses.replace(result, status="failed", detail=problems[result.slug],
                                         error=error.to_dict())
        elif result.slug in renewed:
            result = dataclasses.replace(result, detail=f"{result.detail}; new certificate "
                                         "served")
        updated.append(result)
    return updated
