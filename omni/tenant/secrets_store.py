"""Where a tenant's secrets live: a 0600 JSON file in its state dir on the host."""

from __future__ import annotations

from typing import TYPE_CHECKING

from omni.errors import StepFailed
from omni.inventory.models import Host
from omni.tenant.secrets import TenantSecrets

if TYPE_CHECKING:
    from omni.hosts.session import HostSession


def secrets_path(host: Host, slug: str) -> str:
    return f"{host.state_dir}/tenants/{slug}/secrets.json"


def load_or_generate_secrets(session: HostSession, host: Host, slug: str) -> TenantSecrets:
    """The tenant's secrets from the host, or fresh ones if it has none yet.

    Reads only; the ``tenant.secrets`` resource writes a fresh set before anything uses it.
    """
    raw = session.transport.read_file(secrets_path(host, slug))
    if raw is None:
        return TenantSecrets.generate()
    try:
        return TenantSecrets.from_json(raw)
    except (ValueError, KeyError, TypeError):
        raise StepFailed(
            f"{secrets_path(host, slug)} on {host.name} is not a valid secrets file; "
            "fix or remove it (removing rotates every secret of the tenant)"
        ) from None
