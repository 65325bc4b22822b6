"""The desired state (:class:`TenantSpec`) of a tenant that already exists on its host.

Fleet commands work on tenants ``tenant create`` made: their secrets and ports are read
from the host, never generated. Reads only.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from omni.errors import StepFailed
from omni.inventory.models import Host, Tenant
from omni.tenant.ports import parse_registry, registry_path
from omni.tenant.secrets import TenantSecrets
from omni.tenant.secrets_store import secrets_path
from omni.tenant.spec import TenantSpec

if TYPE_CHECKING:
    from omni.hosts.session import HostSession


def existing_spec(session: HostSession, host: Host, tenant: Tenant, now: datetime) -> TenantSpec:
    """The tenant's spec from its secrets and ports on the host.

    Raises ``StepFailed`` when the tenant was never created there (no secrets file or no
    ports), naming the command that creates it.
    """
    path = secrets_path(host, tenant.slug)
    raw = session.transport.read_file(path)
    if raw is None:
        raise StepFailed(
            f"tenant {tenant.slug} has no secrets on host {host.name} ({path}): it was never "
            f"created there; run `omni tenant create {tenant.slug}`",
            tenant=tenant.slug,
        )
    try:
        secrets = TenantSecrets.from_json(raw)
    except (ValueError, KeyError, TypeError):
        raise StepFailed(f"{path} on {host.name} is not a valid secrets file") from None
    app_port, redis_port = tenant.app_port, tenant.redis_port
    if app_port is None or redis_port is None:
        known = parse_registry(session.transport.read_file(registry_path(host)))
        ports = known.get(tenant.slug, {})
        app_port = app_port or ports.get("app_port")
        redis_port = redis_port or ports.get("redis_port")
    if app_port is None or redis_port is None:
        raise StepFailed(
            f"tenant {tenant.slug} has no ports on host {host.name}: run "
            f"`omni tenant create {tenant.slug}`",
            tenant=tenant.slug,
        )
    return TenantSpec(tenant, host, secrets, app_port, redis_port, now=now)
