"""Blue/green release switch: the one path deploy and rollback take for one tenant.

Under the tenant's lock (the caller's), on its host:
 1. finish or undo a run that died half-way (see :func:`recover`);
 2. record ``started`` in the ledger; take a verified dump;
 3. (deploy) run the new image's migrations in a one-off container; on failure restore
    the database from that dump (new database, then swap names) and stop: the old release
    never stopped serving;
 4. start the new release as ``omni-<slug>-app-next`` on the standby port beside the live
    one and wait for its own ``/health`` (from the host); on failure remove it, with its last
    log lines in the error;
 5. (rollback with ``restore_db``) restore the dump taken before the release being undone;
 6. switch the nginx upstream to the standby port: written, ``nginx -t``, reloaded, proven
    live (the vhost resource of ``tenant create``), else the previous vhost is restored;
 7. write the tenant file (image, ports swapped) and the host's port registry;
 8. let in-flight requests drain, stop the old container (SIGTERM, grace period), remove
    it, rename the new one to ``omni-<slug>-app``; record ``finished``.
The end state is exactly what ``tenant create`` converges to for the new tenant file.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from omni.engine.step import Verb
from omni.errors import OmniError, StepFailed
from omni.inventory.loader import Inventory, save_tenant
from omni.releases import ledger
from omni.render import render_vhost
from omni.resources.containers import TenantContainer
from omni.resources.files import ManagedFile
from omni.resources.vhost import VhostResource
from omni.tenant.checks import check_upstream
from omni.tenant.dumps import take_dump
from omni.tenant.existing import existing_spec
from omni.tenant.network import gateway_container
from omni.tenant.ports import allocate_standby_port, record_swap
from omni.tenant.resources import migrations_resource, tenant_resources
from omni.tenant.restore import restore_database
from omni.tenant.spec import TenantSpec

if TYPE_CHECKING:
    from omni.hosts.session import HostSession
    from omni.inventory.models import Tenant

DRAIN_SECONDS = 3.0
STOP_GRACE_SECONDS = 30
_LOG_LINES = 8


@dataclass(frozen=True)
class SwitchRequest:
    kind: str  # "deploy" | "rollback"
    image: str
    who: str
    run_migrations: bool = True
    restore_dump: str | None = None  # rollback --restore-db: the dump to restore
    dry_run: bool = False


@dataclass(frozen=True)
class SwitchReport:
    release: str
    status: str  # succeeded | failed | unchanged | planned
    detail: str
    data: dict[str, Any]
    error: OmniError | None = None


def next_container(spec: TenantSpec) -> str:
    return f"{spec.app_container}-next"


def app_resource(spec: TenantSpec) -> TenantContainer:
    """The app container exactly as ``tenant create`` converges it for ``spec``."""
    found = [r for r in tenant_resources(spec)
             if isinstance(r, TenantContainer) and r.key == "medusa.app"]
    return found[0]


def switch_release(
    session: HostSession,
    inventory: Inventory,
    tenant: Tenant,
    request: SwitchRequest,
    clock: Callable[[], datetime],
) -> SwitchReport:
    host = inventory.host(tenant.host)
    docker = session.docker()
    recovered = None if request.dry_run else recover(session, inventory, tenant, clock)
    live = existing_spec(session, host, tenant, clock())
    image_id = docker.image_id(request.image)
    if image_id is None:
        raise StepFailed(f"image {request.image} is not present on host {host.name}",
                         tenant=tenant.slug)
    history = ledger.releases(session.transport, host, tenant.slug)
    if not history and not request.dry_run:
        history = [_record_baseline(session, tenant, request.who, clock)]
    previous = ledger.current(history)
    standby = tenant.standby_app_port
    if standby is None and not request.dry_run:
        standby = allocate_standby_port(session, inventory, tenant)
    target = tenant.model_copy(update={
        "image": request.image, "app_port": standby or 0, "standby_app_port": live.app_port})
    spec = dataclasses.replace(live, tenant=target, app_port=standby or 0)
    app = app_resource(spec)
    fingerprint = app.desired_hash(image_id)
    migrations = migrations_resource(spec)
    migrate_step = migrations.plan(migrations.observe(session))[0]
    will_migrate = request.run_migrations and migrate_step.verb is Verb.RUN
    data: dict[str, Any] = {
        "image": {"before": tenant.image, "after": request.image},
        "image_id": image_id, "config_fingerprint": fingerprint,
        "migrations": "run" if will_migrate else "none due",
        "app_port": {"before": live.app_port, "after": standby},
        "recovered": recovered,
    }
    if request.dry_run:
        current = session.transport.read_file(live.vhost_path)
        data["vhost_diff"] = _diff(live.vhost_path, current, render_vhost(spec)) if standby \
            else "upstream moves to the standby port (allocated on the first deploy)"
        return SwitchReport("", "planned", f"would {request.kind} {tenant.image} -> "
                            f"{request.image}", data)
    release = ledger.new_release_id(clock())
    ledger.append(session.transport, host, tenant.slug, {
        "event": "started", "release": release, "kind": request.kind, "image": request.image,
        "image_id": image_id, "previous_image": tenant.image,
        "previous_release": previous.release if previous else None,
        "config_fingerprint": fingerprint, "who": request.who, "when": clock().isoformat(),
    })

    def finish(result: str, detail: str, **extra: Any) -> None:
        ledger.append(session.transport, host, tenant.slug, {
            "event": "finished", "release": release, "result": result, "detail": detail,
            "when": clock().isoformat(), **extra})

    data["release"] = release
    dump = take_dump(session.transport, host, tenant.slug, live.db_name,
                     user=host.postgres.admin_user, password=session.admin_password(),
                     now=clock())
    data["dump"] = dump.path
    migrated = schema_changed = restored_db = False
    try:
        if will_migrate:
            migrated = True
            schema_before = _schema_fingerprint(session, live.db_name)
            try:
                migrations.apply(session, migrate_step)
            except OmniError as exc:
                restored = restore_database(session, live, dump.path, clock())
                restored_db = True
                data["restored_database"] = {"from": dump.path, "replaced": restored.replaced}
                raise StepFailed(
                    f"migrations of {request.image} failed ({exc.message}); database restored "
                    f"from {dump.path}; {tenant.image} still serving", tenant=tenant.slug,
                ) from None
            schema_changed = _schema_fingerprint(session, live.db_name) != schema_before
        _start_beside(session, app, spec)
        if request.restore_dump:
            restored = restore_database(session, live, request.restore_dump, clock())
            data["restored_database"] = {"from": request.restore_dump,
                                         "replaced": restored.replaced}
            # The dump predates the release being undone: its schema is the target's.
            session.transport.write_file(spec.migrated_marker_path, image_id.encode() + b"\n",
                                         mode=0o600)
        _switch_upstream(session, spec)
    except OmniError as exc:
        docker.remove(next_container(spec), force=True)
        finish("failed", exc.message, dump=dump.path, migrated=migrated,
               schema_changed=schema_changed, restored=restored_db)
        return SwitchReport(release, "failed", exc.message, data, exc)
    save_tenant(inventory.path, target)
    record_swap(session, host, target)
    _retire_old(session, spec)
    _write_env_file(session, spec)
    finish("succeeded", f"{tenant.image} -> {request.image}", dump=dump.path,
           migrated=migrated, schema_changed=schema_changed,
           restored=request.restore_dump is not None)
    return SwitchReport(release, "succeeded", f"{tenant.image} -> {request.image}", data)


def _schema_fingerprint(session: HostSession, database: str) -> str:
    """A digest of the tenant database's tables and columns (did migrations change it?)."""
    import hashlib

    with session.postgres(database) as conn:
        rows = conn.execute(
            "SELECT table_schema, table_name, column_name, data_type "
            "FROM information_schema.columns "
            "WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2, 3"
        ).fetchall()
    return hashlib.sha256(repr(rows).encode()).hexdigest()


def _record_baseline(session: HostSession, tenant: Tenant, who: str,
                     clock: Callable[[], datetime]) -> ledger.Release:
    """The release ``tenant create`` made, recorded before the first deploy so that there
    is always a release to roll back to."""
    running = session.docker().container(f"omni-{tenant.slug}-app")
    image_id = running.image_id if running else ""
    release = ledger.new_release_id(clock())
    when = clock().isoformat()
    for event in (
        {"event": "started", "release": release, "kind": "create", "image": tenant.image,
         "image_id": image_id, "who": who, "when": when},
        {"event": "finished", "release": release, "result": "succeeded", "when": when,
         "detail": "release made by tenant create (recorded at the first deploy)"},
    ):
        ledger.append(session.transport, session.host, tenant.slug, event)
    return ledger.fold(ledger.read_events(session.transport, session.host, tenant.slug))[-1]


def _diff(path: str, current: bytes | None, desired: str) -> str:
    from omni.resources.files import unified_diff

    return unified_diff(path, None if current is None else current.decode("utf-8", "replace"),
                        desired)


def _start_beside(session: HostSession, app: TenantContainer, spec: TenantSpec) -> None:
    """The new release, started under its temporary name on the standby port, healthy on
    its own port (from the host), or removed with its last log lines in the error."""
    beside = dataclasses.replace(app, name=next_container(spec))
    if session.docker().container(gateway_container(spec)) is None:
        raise StepFailed(
            f"tenant {spec.slug} is not on its own network yet: run `omni tenant create "
            f"{spec.slug}` once to move it (a restart-length interruption), then deploy",
            tenant=spec.slug)
    session.docker().remove(beside.name, force=True)
    beside.apply(session, beside.plan(beside.observe(session))[0])
    deadline = time.monotonic() + spec.host.health.deadline_seconds
    while True:
        status, detail = check_upstream(session, spec)
        if status == "pass":
            return
        if time.monotonic() >= deadline:
            logs = session.docker().logs(beside.name, tail=_LOG_LINES).decode("utf-8", "replace")
            tail = " | ".join(line.strip() for line in logs.strip().splitlines())
            raise StepFailed(spec.redactor().text(
                f"new release {spec.tenant.image} failed its health gate "
                f"({detail}); last logs: {tail}"), tenant=spec.slug)
        time.sleep(1.0)


def _switch_upstream(session: HostSession, spec: TenantSpec) -> None:
    vhost = VhostResource(spec)
    step = vhost.plan(vhost.observe(session))[0]
    if step.changing:
        vhost.apply(session, step)


def _write_env_file(session: HostSession, spec: TenantSpec) -> None:
    """The env file on the host records the running release's environment (its port)."""
    for resource in tenant_resources(spec):
        if isinstance(resource, ManagedFile) and resource.key == "medusa.env":
            step = resource.plan(resource.observe(session))[0]
            if step.changing:
                resource.apply(session, step)


def _retire_old(session: HostSession, spec: TenantSpec) -> None:
    """Drain, stop and remove the old release; the new one takes the app's name."""
    docker = session.docker()
    time.sleep(DRAIN_SECONDS)  # requests nginx already sent to the old release finish
    docker.stop(spec.app_container, timeout=STOP_GRACE_SECONDS)
    docker.remove(spec.app_container, force=True)
    docker.rename(next_container(spec), spec.app_container)


def recover(session: HostSession, inventory: Inventory, tenant: Tenant,
            clock: Callable[[], datetime]) -> str | None:
    """Finish or undo a release whose run died half-way; returns what was done, if any.

    A ``-next`` container left behind was either never switched to (the vhost on disk
    still points at the tenant file's ``app_port``): removed, release ``abandoned``; or
    switched to (nginx already sends traffic to it): the old container is retired, the
    tenant file written, release ``completed``.
    """
    host = inventory.host(tenant.host)
    docker = session.docker()
    history = ledger.releases(session.transport, host, tenant.slug)
    interrupted = [r for r in history if r.status == "interrupted"]
    live = existing_spec(session, host, tenant, clock())
    leftover = docker.container(next_container(live))
    if leftover is None and not interrupted:
        return None
    outcome = "abandoned"
    if leftover is not None and interrupted:
        last = interrupted[-1]
        standby = tenant.standby_app_port
        if standby:
            target = tenant.model_copy(update={
                "image": last.image, "app_port": standby, "standby_app_port": live.app_port})
            spec = dataclasses.replace(live, tenant=target, app_port=standby)
            on_disk = session.transport.read_file(live.vhost_path)
            if on_disk == render_vhost(spec).encode():
                save_tenant(inventory.path, target)
                record_swap(session, host, target)
                _retire_old(session, spec)
                _write_env_file(session, spec)
                outcome = "completed"
    if outcome == "abandoned" and leftover is not None:
        docker.remove(leftover.name, force=True)
    for release in interrupted:
        ledger.append(session.transport, host, tenant.slug, {
            "event": "finished", "release": release.release, "result": outcome,
            "detail": f"run died half-way; {outcome} by a later run",
            "when": clock().isoformat()})
    return f"{outcome} {', '.join(r.release for r in interrupted) or 'a leftover container'}"
