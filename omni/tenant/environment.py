"""The files a tenant's containers read: Medusa's env file and Redis's config."""

from __future__ import annotations

from omni.redact import MASK
from omni.tenant.secrets import TenantSecrets
from omni.tenant.spec import IN_NAMESPACE, TenantSpec

REDIS_MAXMEMORY = "256mb"


def medusa_env(spec: TenantSpec) -> dict[str, str]:
    """The Medusa container's environment, in file order. Contains secrets."""
    origins = ",".join(f"https://{domain}" for domain in spec.tenant.domains)
    env = {
        "NODE_ENV": "production",
        "HOST": IN_NAMESPACE,
        "PORT": str(spec.app_port),
        "MEDUSA_BACKEND_URL": spec.public_url,
        "DATABASE_URL": spec.database_url,
        "REDIS_URL": spec.redis_url,
        "JWT_SECRET": spec.secrets.jwt_secret,
        "COOKIE_SECRET": spec.secrets.cookie_secret,
        "STORE_CORS": origins,
        "ADMIN_CORS": origins,
        "AUTH_CORS": origins,
    }
    # Overrides first so the derived keys win; validation already refuses reserved keys.
    return {**spec.tenant.env, **env}


def masked_secrets() -> TenantSecrets:
    return TenantSecrets(db_password=MASK, redis_password=MASK, jwt_secret=MASK, cookie_secret=MASK)
