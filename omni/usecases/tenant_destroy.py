"""Use case: remove a tenant from its host (``omni tenant destroy SLUG --yes``).

Takes a final backup: into the host's offsite restic repository, app stopped and read
back, when the host has ``backup`` settings (:mod:`omni.backup.final`); else a final
``pg_dump`` kept in the host's dump dir. Nothing is removed unless it succeeded. Then it
removes the vhost, the containers, the certificate, the database (and any a restore
kept), the role and the tenant's state, and finally its inventory file. Refuses without
``confirmed``; ``dry_run`` shows what would go.
Idempotent: a destroy killed half-way is finished by running it again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omni.audit import AuditContext, audited
from omni.engine.engine import ApplyFailed, NullProgress, Progress, apply_plan, plan_resources
from omni.errors import InvalidInput, StepFailed
from omni.hosts.lock import check_wait_seconds
from omni.inventory.loader import load_inventory
from omni.output.result import Result
from omni.resources.removal import (
    ContainerAbsent,
    DatabaseAbsent,
    DatabaseDump,
    OwnedDatabasesAbsent,
    PathAbsent,
    RoleAbsent,
    VhostAbsent,
)
from omni.tenant.network import gateway_container, publish_container
from omni.tenant.ports import release_ports
from omni.tenant.secrets import TenantSecrets
from omni.tenant.spec import TenantSpec
from omni.usecases.outcomes import apply_failure
from omni.usecases.sessions import SessionOpener, SessionOptions, open_host_session

if TYPE_CHECKING:
    from omni.engine.resource import Resource

COMMAND = "tenant destroy"


@dataclass(frozen=True)
class DestroyRequest:
    slug: str
    confirmed: bool = False
    dry_run: bool = False
    wait_seconds: float = 0.0  # how long to wait for the tenant lock (0: fail at once)
    expect_plan: str | None = None  # the reviewed dry run's plan_fingerprint


def final_backup(spec: TenantSpec, admin_password: str, stamp: str) -> Resource[Any]:
    """Offsite into the host's restic repository when it has ``backup`` settings (see
    :mod:`omni.backup.final`); else the local final dump in ``dump_dir``."""
    host = spec.host
    if host.backup is not None:
        from omni.backup.final import OffsiteFinalBackup

        return OffsiteFinalBackup(spec.tenant, spec.db_name, spec.app_container,
                                  host.backup.repository, spec.now)
    return DatabaseDump(
        database=spec.db_name,
        user=host.postgres.admin_user,
        password=admin_password,
        pg_host=host.postgres.host,
        pg_port=host.postgres.port,
        dump_path=f"{host.postgres.dump_dir}/{spec.slug}-{stamp}.dump",
    )


def removal_resources(spec: TenantSpec, admin_password: str, stamp: str) -> list[Resource[Any]]:
    host = spec.host
    return [
        final_backup(spec, admin_password, stamp),
        VhostAbsent(path=spec.vhost_path, nginx=host.nginx),
        ContainerAbsent("network.publish", publish_container(spec)),
        ContainerAbsent("medusa.app", spec.app_container),
        ContainerAbsent("medusa.migrations", spec.migrate_container),
        ContainerAbsent("medusa.onboard", spec.onboard_container),  # left by a killed run
        ContainerAbsent("redis.container", spec.redis_container),
        ContainerAbsent("network.gateway", gateway_container(spec)),
        PathAbsent("acme.certificate", host.nginx.certs_dir, spec.slug),
        DatabaseAbsent(spec.db_name),
        OwnedDatabasesAbsent(spec.role_name, spec.db_name),
        RoleAbsent(spec.role_name),
        PathAbsent("tenant.state", f"{host.state_dir}/tenants", spec.slug),
    ]


def destroy_tenant(
    request: DestroyRequest,
    inventory_path: Path,
    *,
    open_session: SessionOpener | None = None,
    progress: Progress | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    audit: AuditContext | None = None,
    sessions: SessionOptions | None = None,
) -> Result:
    """Destroy the tenant; see the module docstring. Raises ``OmniError`` subclasses.
    A real run (not a dry run) appends an entry to the host's audit log with ``audit``.
    With ``expect_plan`` it refuses (exit 2) unless a fresh dry run has that fingerprint
    (tenant, host and each removal step's resource and verb: the final dump's file name is
    stamped at apply time, so it is not part of it); a dry run carries ``plan_fingerprint``."""
    from omni.usecases.plan import apply_reviewed

    def reviewed(result: Result) -> object:
        return {"tenant": result.data.get("tenant"), "host": result.data.get("host"),
                "steps": [[s.resource, s.verb.value] for s in result.steps if s.changing]}

    def run(dry_run: bool) -> Result:
        return _destroy(dataclasses.replace(request, dry_run=dry_run), inventory_path,
                        open_session=open_session, progress=progress, clock=clock,
                        audit=audit, sessions=sessions)

    return apply_reviewed(run, dry_run=request.dry_run, expect_plan=request.expect_plan,
                          reviewed=reviewed, command=COMMAND)


def _destroy(
    request: DestroyRequest,
    inventory_path: Path,
    *,
    open_session: SessionOpener | None,
    progress: Progress | None,
    clock: Callable[[], datetime],
    audit: AuditContext | None,
    sessions: SessionOptions | None,
) -> Result:
    started = audit.now() if audit else None
    check_wait_seconds(request.wait_seconds, "--wait")
    inventory = load_inventory(inventory_path)
    tenant = inventory.tenants.get(request.slug)
    if tenant is None:
        raise InvalidInput(
            f"SLUG: no tenant {request.slug!r} in {inventory.path}/tenants", field="slug"
        )
    if not request.confirmed and not request.dry_run:
        raise InvalidInput(
            f"--yes: destroying {request.slug!r} deletes its database (after a final dump), "
            "containers, vhost and certificate; pass --yes to confirm or --dry-run to look",
            field="yes",
        )
    host = inventory.host(tenant.host)
    session = open_host_session(inventory, host.name, open_session, sessions)
    now = clock()
    try:
        lock = nullcontext() if request.dry_run else session.lock(
            f"tenant-{tenant.slug}", request.wait_seconds, purpose=f"{COMMAND} {tenant.slug}"
        )
        with lock, audited(audit, session, command=COMMAND, tenants=[tenant.slug],
                           enabled=not request.dry_run, started=started) as entry:
            raw_password = session.transport.read_file(host.postgres.admin_password_file)
            if raw_password is None:
                raise StepFailed(f"host {host.name}: admin password file is missing")
            admin_password = raw_password.decode().strip()
            # Secrets only name things here; nothing is created with them.
            spec = TenantSpec(
                tenant,
                host,
                TenantSecrets.generate(),
                tenant.app_port or 0,
                tenant.redis_port or 0,
                now=now,
            )
            resources = removal_resources(spec, admin_password, now.strftime("%Y%m%dT%H%M%SZ"))
            plan = plan_resources(session, resources)
            data: dict[str, Any] = {
                "tenant": tenant.slug,
                "host": host.name,
                "dry_run": request.dry_run,
            }
            if request.dry_run:
                return Result.success(COMMAND, data=data, steps=plan.steps)
            try:
                apply_plan(
                    session,
                    plan,
                    progress or NullProgress(),
                    lambda text: text.replace(admin_password, "********"),
                )
            except ApplyFailed as exc:
                return entry.done(apply_failure(COMMAND, exc, data))
            dumps = [
                s.changes[0].after
                for s in plan.steps
                if s.resource == "postgres.dump" and s.changing
            ]
            data["dump"] = dumps[0] if dumps else None
            offsite = getattr(resources[0], "taken", None)
            if host.backup is None:
                data["final_backup"] = (f"local dump {data['dump']} (host {host.name} has no "
                                        "`backup` settings: nothing went offsite)")
            elif offsite:
                data["backup"] = dict(offsite)
                data["final_backup"] = (f"snapshot {offsite['snapshot']} in "
                                        f"{offsite['repository']}, read back "
                                        f"({offsite['entries']} entries)")
            else:
                data["final_backup"] = "none needed: the database was already gone"
            release_ports(session, host, tenant.slug)
            inventory.tenant_file(tenant.slug).unlink(missing_ok=True)
            return entry.done(Result.success(COMMAND, data=data, steps=plan.steps))
    finally:
        session.close()
