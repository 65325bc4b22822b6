"""Builders for inventory models in unit tests (no server involved)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from omni.inventory.models import Host, Tenant
from omni.tenant.secrets import TenantSecrets
from omni.tenant.spec import TenantSpec

PINNED = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ6Yh0bLsDkCi0bWQkzXb2W7yJj0ZrSgeZ2b8d5m3Aq1 test"


def make_host(**overrides: Any) -> Host:
    data: dict[str, Any] = {
        "name": "dev",
        "address": "127.0.0.2",
        "host_keys": [PINNED],
        "bind_address": "127.0.0.2",
        "acme": {"email": "ops@example.com"},
    }
    data.update(overrides)
    return Host(**data)


def make_tenant(**overrides: Any) -> Tenant:
    data: dict[str, Any] = {
        "slug": "acme",
        "host": "dev",
        "domains": ["shop.acme.example"],
        "image": "omni-lab/medusa:v1",
    }
    data.update(overrides)
    return Tenant(**data)


def make_secrets() -> TenantSecrets:
    return TenantSecrets(
        db_password="db-secret-0123456789abcdef",
        redis_password="redis-secret-0123456789abcdef",
        jwt_secret="jwt-secret-0123456789abcdef",
        cookie_secret="cookie-secret-0123456789abcdef",
    )


def make_spec(**tenant_overrides: Any) -> TenantSpec:
    return TenantSpec(
        tenant=make_tenant(**tenant_overrides),
        host=make_host(),
        secrets=make_secrets(),
        app_port=9001,
        redis_port=6401,
        now=datetime(2026, 11, 25, tzinfo=UTC),
    )
