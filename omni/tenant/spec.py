"""The desired state of one tenant on its host, derived from the inventory.

Everything here is pure naming and path arithmetic: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from omni.inventory.models import Host, Tenant
from omni.redact import Redactor
from omni.tenant.secrets import TenantSecrets
from omni.tenant.secrets_store import secrets_path
from omni.tenant.storefront import storefront_path

# What the tenant's containers see inside their own network namespace (see
# omni.tenant.network): the app, Redis and the gateway's way to Postgres, all on loopback.
IN_NAMESPACE = "127.0.0.1"
# Postgres truncates identifiers at 63 bytes; slugs are at most 40 chars, so this fits.
_DB_PREFIX = "tenant_"


@dataclass(frozen=True)
class TenantSpec:
    tenant: Tenant
    host: Host
    secrets: TenantSecrets
    app_port: int
    redis_port: int
    now: datetime  # the run's clock, injected (certificate renewal windows)

    @property
    def slug(self) -> str:
        return self.tenant.slug

    @property
    def db_name(self) -> str:
        return _DB_PREFIX + self.slug.replace("-", "_")

    @property
    def role_name(self) -> str:
        return self.db_name

    @property
    def state_dir(self) -> str:
        return f"{self.host.state_dir}/tenants/{self.slug}"

    @property
    def secrets_path(self) -> str:
        return secrets_path(self.host, self.slug)

    @property
    def env_path(self) -> str:
        return f"{self.state_dir}/medusa.env"

    @property
    def redis_conf_path(self) -> str:
        return f"{self.state_dir}/redis.conf"

    @property
    def migrated_marker_path(self) -> str:
        return f"{self.state_dir}/migrated-image"

    @property
    def app_container(self) -> str:
        return app_container_name(self.slug)

    @property
    def redis_container(self) -> str:
        return f"omni-{self.slug}-redis"

    @property
    def migrate_container(self) -> str:
        return f"omni-{self.slug}-migrate"

    @property
    def onboard_container(self) -> str:
        return f"omni-{self.slug}-onboard"

    @property
    def onboard_script_path(self) -> str:
        """omni's onboarding script for ``medusa exec`` (no secret in it)."""
        return f"{self.state_dir}/onboard.js"

    @property
    def storefront_path(self) -> str:
        return storefront_path(self.host, self.slug)

    @property
    def vhost_path(self) -> str:
        return f"{self.host.nginx.sites_dir}/omni-{self.slug}.conf"

    @property
    def cert_dir(self) -> str:
        """Holds versioned certificate directories and the ``live`` link to the current one
        (see ``omni.acme.store``)."""
        return f"{self.host.nginx.certs_dir}/{self.slug}"

    @property
    def fullchain_path(self) -> str:
        return f"{self.cert_dir}/live/fullchain.pem"

    @property
    def privkey_path(self) -> str:
        return f"{self.cert_dir}/live/privkey.pem"

    @property
    def primary_domain(self) -> str:
        return self.tenant.domains[0]

    @property
    def public_url(self) -> str:
        return f"https://{self.primary_domain}"

    @property
    def bind_address(self) -> str:
        return self.host.bind_address

    @property
    def database_url(self) -> str:
        """Postgres as the tenant's containers reach it: through the gateway's loopback
        port in their namespace (the host's Postgres port number, kept for readability)."""
        pg = self.host.postgres
        return (
            f"postgres://{self.role_name}:{self.secrets.db_password}"
            f"@{IN_NAMESPACE}:{pg.port}/{self.db_name}?sslmode={pg.sslmode}"
        )

    @property
    def redis_url(self) -> str:
        return f"redis://:{self.secrets.redis_password}@{IN_NAMESPACE}:{self.redis_port}/0"

    def redactor(self) -> Redactor:
        return Redactor(self.secrets.values())

    def labels(self, component: str) -> dict[str, str]:
        return {
            "omni.managed": "true",
            "omni.tenant": self.slug,
            "omni.component": component,
        }


def app_container_name(slug: str) -> str:
    """The tenant's live app container (a deploy's ``-next`` is renamed to it)."""
    return f"omni-{slug}-app"
