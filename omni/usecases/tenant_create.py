"""Use case: converge one tenant on its host (``omni tenant create``).

Reads the inventory, validates the request before any connection, then on the tenant's
host: takes the tenant lock, observes and plans every resource, stops there for a dry run,
else writes the tenant file (if new), applies the plan, re-observes (drift is a bug) and
runs the health gate. Re-running after any failure finishes the job.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from omni import validation
from omni.audit import AuditContext, audited
from omni.engine.engine import (
    ApplyFailed,
    NullProgress,
    Plan,
    Progress,
    apply_plan,
    plan_resources,
    verify,
)
from omni.engine.step import redacted
from omni.errors import HealthGateFailed, InvalidInput, StepFailed
from omni.hosts.lock import check_wait_seconds
from omni.inventory.checks import cross_file_problems
from omni.inventory.loader import Inventory, describe_validation_error, load_inventory, save_tenant
from omni.inventory.models import Tenant
from omni.output.result import Result
from omni.tenant.health import health_gate
from omni.tenant.ports import allocate_ports, allocate_standby_port
from omni.tenant.resources import tenant_resources
from omni.tenant.secrets_store import load_or_generate_secrets
from omni.tenant.spec import TenantSpec
from omni.usecases.outcomes import apply_failure
from omni.usecases.sessions import SessionOpener, SessionOptions, open_host_session

if TYPE_CHECKING:
    from omni.engine.resource import Resource
    from omni.hosts.session import HostSession

COMMAND = "tenant create"


@dataclass(frozen=True)
class CreateRequest:
    slug: str
    host: str | None = None
    domains: tuple[str, ...] = ()
    image: str | None = None
    admin_email: str | None = None  # the shop owner, invited as Medusa admin user
    dry_run: bool = False
    expect_plan: str | None = None  # refuse to apply if the plan's fingerprint differs
    wait_seconds: float = 0.0  # how long to wait for the tenant lock (0: fail at once)


def resolve_tenant(request: CreateRequest, inventory: Inventory) -> tuple[Tenant, bool]:
    """The tenant to converge and whether its inventory file is new. Pure; raises
    ``InvalidInput`` naming the CLI option and the rule."""
    _check_given_options(request)
    existing = inventory.tenants.get(request.slug)
    if existing is not None:
        conflicts = [
            name
            for name, given, have in (
                ("--host", request.host, existing.host),
                ("--image", request.image, existing.image),
                ("--admin-email", request.admin_email, existing.admin_email),
            )
            if given is not None and given != have
        ]
        if request.domains and tuple(request.domains) != tuple(existing.domains):
            conflicts.append("--domain")
        if conflicts:
            raise InvalidInput(
                f"{', '.join(conflicts)}: tenant {request.slug!r} already exists in "
                f"{inventory.tenant_file(request.slug)} with other values; edit that file "
                "(or omit the options) to change it",
                field=conflicts[0].lstrip("-").replace("-", "_"),
            )
        return existing, False
    missing = [
        name
        for name, value in (
            ("--host", request.host),
            ("--domain", request.domains),
            ("--image", request.image),
        )
        if not value
    ]
    if missing:
        raise InvalidInput(
            f"{missing[0]}: required for a new tenant ({request.slug!r} has no inventory file)",
            field=missing[0].lstrip("-"),
        )
    try:
        tenant = Tenant.model_validate(
            {
                "slug": request.slug,
                "host": request.host,
                "domains": list(request.domains),
                "image": request.image,
                **({"admin_email": request.admin_email} if request.admin_email else {}),
            }
        )
    except ValidationError as exc:
        raise InvalidInput(_option_error(exc), field="input") from None
    inventory.host(tenant.host)  # unknown host -> InvalidInput naming the known ones
    others = {slug: t for slug, t in inventory.tenants.items() if slug != tenant.slug}
    for domain in tenant.domains:
        owner = next((t for t in others.values() if domain in t.domains), None)
        if owner is not None:
            raise InvalidInput(
                f"--domain: {domain!r} is already served by tenant {owner.slug!r} on host "
                f"{owner.host} ({inventory.tenant_file(owner.slug)}); a domain belongs to one "
                "tenant",
                field="domain",
            )
    problems = cross_file_problems(
        inventory.hosts,
        {**others, tenant.slug: tenant},
        hosts_file=str(inventory.path / "hosts.yaml"),
        file_of=lambda slug: (
            "--domain" if slug == tenant.slug else str(inventory.tenant_file(slug))
        ),
    )
    if problems:
        raise InvalidInput(problems[0], field="domain")
    return tenant, True


def _check_given_options(request: CreateRequest) -> None:
    """Each option that was given obeys its rule, before anything else is said about it."""
    checks: list[tuple[str, Callable[[str], str], str | None]] = [
        ("SLUG", validation.check_slug, request.slug),
        ("--host", validation.check_host_name, request.host),
        ("--image", validation.check_image, request.image),
        ("--admin-email", validation.check_email, request.admin_email),
    ]
    checks += [("--domain", validation.check_domain, domain) for domain in request.domains]
    for option, check, value in checks:
        if value is None:
            continue
        try:
            check(value)
        except ValueError as exc:
            field = option.lstrip("-").lower().replace("-", "_")
            raise InvalidInput(f"{option}: {exc}", field=field) from None
    check_wait_seconds(request.wait_seconds, "--wait")


def _option_error(exc: ValidationError) -> str:
    line = describe_validation_error(exc)
    for field, option in (
        ("slug", "SLUG"),
        ("host", "--host"),
        ("domains", "--domain"),
        ("image", "--image"),
        ("admin_email", "--admin-email"),
    ):
        if line.startswith(field):
            return option + line[len(field) :].lstrip(".0123456789")
    return line


@dataclass(frozen=True)
class TenantPlan:
    """What ``tenant create`` would do to one tenant: its spec (ports settled), resources
    and plan (steps hold masked values; pass them through ``spec.redactor()`` before
    showing them, as a last line of defence), and the data its result reports."""

    tenant: Tenant
    spec: TenantSpec
    resources: list[Resource[Any]]
    plan: Plan
    data: dict[str, Any]


def plan_tenant(
    session: HostSession, inventory: Inventory, tenant: Tenant, *, reserve: bool,
    now: datetime,
) -> TenantPlan:
    """Observe and plan every resource of ``tenant`` on its host (``tenant create`` up to
    its dry-run stop). Reads only unless ``reserve`` (then it records the tenant's ports in
    the host's registry); takes no lock. A tenant new to the host gets fresh secrets that
    are never written here (the plan masks them; its fingerprint does not depend on them).
    Raises ``OmniError`` subclasses (host unreachable, missing image, ...)."""
    host = inventory.host(tenant.host)
    secrets = load_or_generate_secrets(session, host, tenant.slug)
    app_port, redis_port = allocate_ports(session, inventory, tenant, reserve=reserve)
    tenant = tenant.model_copy(update={"app_port": app_port, "redis_port": redis_port})
    # Allocated now, not at the first deploy: the tenant's gateways forward both ports from
    # the start, so a deploy never has to touch them.
    standby = allocate_standby_port(session, inventory, tenant, reserve=reserve)
    tenant = tenant.model_copy(update={"standby_app_port": standby})
    spec = TenantSpec(tenant, host, secrets, app_port, redis_port, now=now)
    resources = tenant_resources(spec)
    plan = plan_resources(session, resources)
    data = {
        "tenant": tenant.slug,
        "host": host.name,
        "url": spec.public_url,
        "domains": list(tenant.domains),
        "admin_email": tenant.admin_email,
        "app_port": app_port,
        "redis_port": redis_port,
        "standby_app_port": standby,
        "plan_fingerprint": plan.fingerprint(),
    }
    return TenantPlan(tenant, spec, resources, plan, data)


def create_tenant(
    request: CreateRequest,
    inventory_path: Path,
    *,
    open_session: SessionOpener | None = None,
    progress: Progress | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    audit: AuditContext | None = None,
    sessions: SessionOptions | None = None,
) -> Result:
    """Converge the tenant; see the module docstring. Raises ``OmniError`` subclasses.
    A real run (not a dry run) appends an entry to the host's audit log with ``audit``."""
    progress = progress or NullProgress()
    started = audit.now() if audit else None
    inventory = load_inventory(inventory_path)
    tenant, is_new = resolve_tenant(request, inventory)
    host = inventory.host(tenant.host)
    session = open_host_session(inventory, host.name, open_session, sessions)
    try:
        # A dry run takes no lock: it must leave no trace on the host, not even a lock file.
        lock = nullcontext() if request.dry_run else session.lock(
            f"tenant-{tenant.slug}", request.wait_seconds, purpose=f"{COMMAND} {tenant.slug}"
        )
        with lock, audited(audit, session, command=COMMAND, tenants=[tenant.slug],
                           enabled=not request.dry_run, started=started) as entry:
            planned = plan_tenant(session, inventory, tenant, reserve=not request.dry_run,
                                  now=clock())
            tenant, spec, resources, plan = planned.tenant, planned.spec, planned.resources, \
                planned.plan
            redact = spec.redactor().text
            data = {**planned.data, "dry_run": request.dry_run}
            entry.plan_fingerprint = plan.fingerprint()
            if request.expect_plan and request.expect_plan != plan.fingerprint():
                raise InvalidInput(
                    f"--expect-plan: the plan changed since it was reviewed "
                    f"(expected {request.expect_plan}, now {plan.fingerprint()}); review it again",
                    field="expect_plan",
                )
            if request.dry_run:
                return _redacted(Result.success(COMMAND, data=data, steps=plan.steps), redact)
            if is_new or inventory.tenants[tenant.slug] != tenant:
                data["inventory_file"] = str(save_tenant(inventory.path, tenant))
            return entry.done(
                _redacted(_apply(session, plan, resources, spec, data, progress), redact)
            )
    finally:
        session.close()


def _apply(
    session: HostSession,
    plan: Plan,
    resources: Sequence[Resource[Any]],
    spec: TenantSpec,
    data: dict[str, Any],
    progress: Progress,
) -> Result:
    """Apply, verify (only if something changed), then the health gate."""
    try:
        outcomes = apply_plan(session, plan, progress, spec.redactor().text)
    except ApplyFailed as exc:
        return apply_failure(COMMAND, exc, data)
    changed = any(o.status == "applied" for o in outcomes)
    if changed:
        drift = verify(session, resources)
        if drift:
            raise StepFailed(
                "converge left drift (a bug in omni): "
                + "; ".join(f"{s.resource}: {s.summary}" for s in drift),
                step="verify",
            )
    try:
        data["health"] = health_gate(spec, progress)
    except HealthGateFailed as exc:
        return Result.failure(COMMAND, [exc], data=data, steps=plan.steps, changed=changed)
    return Result.success(COMMAND, data=data, steps=plan.steps, changed=changed)


def _redacted(result: Result, redact: Callable[[str], str]) -> Result:
    """The result with every known secret value masked (a last line of defence)."""
    errors = tuple(
        {k: redact(v) if isinstance(v, str) else v for k, v in error.items()}
        for error in result.errors
    )
    return dataclasses.replace(
        result, steps=tuple(redacted(s, redact) for s in result.steps), errors=errors
    )
