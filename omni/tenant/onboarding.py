"""The resources that leave a shop its owner can use: the admin user and the storefront's
publishable key. Both run after the app (and its vhost): see ``omni.resources.admin_user``
and ``omni.resources.storefront_key``."""

from __future__ import annotations

from typing import Any

from omni.engine.resource import Resource
from omni.render import render
from omni.resources.admin_user import AdminUser
from omni.resources.medusa_oneoff import MedusaOneOff
from omni.resources.storefront_key import PublishableKey
from omni.tenant.environment import medusa_env
from omni.tenant.network import network_mode
from omni.tenant.spec import TenantSpec


def onboarding_resources(spec: TenantSpec) -> list[Resource[Any]]:
    """The admin user (only when the tenant names ``admin_email``), then the publishable key."""
    oneoff = MedusaOneOff(
        container_name=spec.onboard_container,
        image=spec.tenant.image,
        env=medusa_env(spec),
        labels=spec.labels("onboard"),
        app_endpoint=(spec.bind_address, spec.app_port),
        ready_deadline_seconds=spec.host.health.deadline_seconds,
        network_mode=network_mode(spec),
    )
    script = render("medusa/onboard.js.j2", slug=spec.slug)
    redact = spec.redactor().text
    resources: list[Resource[Any]] = []
    if spec.tenant.admin_email is not None:
        resources.append(
            AdminUser(
                email=spec.tenant.admin_email,
                db_name=spec.db_name,
                secrets_path=spec.secrets_path,
                public_url=spec.public_url,
                oneoff=oneoff,
                onboard_script=script,
                onboard_script_path=spec.onboard_script_path,
                now=spec.now,
                redact=redact,
            )
        )
    resources.append(
        PublishableKey(
            db_name=spec.db_name,
            state_path=spec.storefront_path,
            oneoff=oneoff,
            onboard_script=script,
            onboard_script_path=spec.onboard_script_path,
            redact=redact,
        )
    )
    return resources
