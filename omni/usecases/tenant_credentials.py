"""Use case: ``omni tenant credentials SLUG``: the shop owner's way into Medusa Admin.

Read-only. Reads the tenant's 0600 secrets file over SSH and returns the admin e-mail and
either the pending invite (its link and expiry) or the generated password, plus whether the
admin user exists yet (the invite was accepted). This is the one command whose output holds
those secrets, on purpose: its result is not redacted. It takes no lock and writes nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from omni.errors import InvalidInput
from omni.inventory.loader import load_inventory
from omni.output.result import Result
from omni.resources import medusa_db
from omni.resources.admin_user import invite_url
from omni.tenant.secrets_store import load_or_generate_secrets, secrets_path
from omni.tenant.spec import TenantSpec
from omni.usecases.sessions import SessionOpener, open_host_session

COMMAND = "tenant credentials"


def tenant_credentials(
    inventory_path: Path, slug: str, *, open_session: SessionOpener | None = None
) -> Result:
    """The tenant's admin credentials. Raises ``InvalidInput`` for an unknown tenant and
    ``StepFailed`` when the host holds no secrets file for it (never created)."""
    inventory = load_inventory(inventory_path)
    tenant = inventory.tenants.get(slug)
    if tenant is None:
        raise InvalidInput(f"SLUG: no tenant {slug!r} in {inventory.path}/tenants", field="slug")
    host = inventory.host(tenant.host)
    public_url = f"https://{tenant.domains[0]}"
    data: dict[str, Any] = {
        "tenant": slug,
        "admin_email": tenant.admin_email,
        "admin_url": f"{public_url}/app",
        "admin_user_exists": None,
        "invite_url": None,
        "invite_expires_at": None,
        "password": None,
    }
    session = open_host_session(inventory, host.name, open_session)
    try:
        if session.transport.read_file(secrets_path(host, slug)) is None:
            raise InvalidInput(
                f"SLUG: tenant {slug!r} has no secrets on {host.name} yet: run "
                f"`omni tenant create {slug}` first",
                field="slug",
            )
        secrets = load_or_generate_secrets(session, host, slug)
        if secrets.admin_invite_token:
            data["invite_url"] = invite_url(public_url, secrets.admin_invite_token)
            data["invite_expires_at"] = secrets.admin_invite_expires_at
        data["password"] = secrets.admin_password
        spec = TenantSpec(tenant, host, secrets, 0, 0, now=datetime.now(UTC))
        db_name = spec.db_name
        if tenant.admin_email and medusa_db.medusa_tables_ready(session, db_name, ("user",)):
            data["admin_user_exists"] = medusa_db.user_exists(session, db_name, tenant.admin_email)
    finally:
        session.close()
    return Result.success(COMMAND, data=data)
