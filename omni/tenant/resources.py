"""The ordered resources that make up a tenant on its host."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

from omni.engine.resource import Resource
from omni.hosts.docker import RuntimeLimits
from omni.render import render, seal
from omni.resources.containers import TenantContainer
from omni.resources.files import ManagedFile, PrivateDirectory
from omni.resources.migrations import Migrations
from omni.resources.postgres import MaintenanceClosed, TenantDatabase, TenantRole
from omni.resources.templates import TemplatedDatabase, TemplateRecipe
from omni.tenant.environment import REDIS_MAXMEMORY, masked_secrets, medusa_env
from omni.tenant.network import (
    NET_DIR_IN_CONTAINER,
    gateway_command,
    gateway_container,
    net_dir,
    network_mode,
    publish_command,
    publish_container,
    redis_probe,
)
from omni.tenant.spec import IN_NAMESPACE, TenantSpec

# Not /etc/redis: Debian makes it 2770 redis:redis, closed to our dedicated uid.
REDIS_CONF_IN_CONTAINER = "/usr/local/etc/redis/omni.conf"


def render_env_file(spec: TenantSpec) -> str:
    return seal(
        render("medusa/medusa.env.j2", slug=spec.slug, host=spec.host.name, env=medusa_env(spec))
    )


def render_redis_conf(spec: TenantSpec) -> str:
    return seal(render(
        "medusa/redis.conf.j2",
        slug=spec.slug,
        host=spec.host.name,
        bind_address=IN_NAMESPACE,
        port=spec.redis_port,
        password=spec.secrets.redis_password,
        maxmemory=REDIS_MAXMEMORY,
    ))


def _limits(spec: TenantSpec, memory_mb: int) -> RuntimeLimits:
    limits = spec.host.limits
    return RuntimeLimits(memory_mb, limits.cpu_shares, limits.log_max_size_mb,
                         limits.log_max_files)


def template_recipe(spec: TenantSpec) -> TemplateRecipe | None:
    """What the tenant's template database holds; None when its host keeps none."""
    if not spec.host.postgres.template_databases or spec.tenant.app_kind != "medusa":
        return None
    return TemplateRecipe(tuple(spec.tenant.migrate_command), dict(spec.tenant.env))


def migrations_resource(spec: TenantSpec) -> Migrations:
    """Medusa's migrations for the tenant's image, in a one-off container (none for a
    ``plain`` app: its plan is always a no-op)."""
    medusa = spec.tenant.app_kind == "medusa"
    return Migrations(
        container_name=spec.migrate_container,
        image=spec.tenant.image,
        command=tuple(spec.tenant.migrate_command) if medusa else (),
        env=medusa_env(spec),
        labels=spec.labels("migrate"),
        network_mode=network_mode(spec),
        marker_path=spec.migrated_marker_path,
        redact=spec.redactor().text,
        database=spec.db_name,
        template=template_recipe(spec),
    )


def gateway_resources(spec: TenantSpec) -> tuple[TenantContainer, TenantContainer]:
    """The tenant's two socat gateways (see ``omni.tenant.network``): the owner of its
    network namespace, and the one publishing its app ports on the host's loopback."""
    mount = ((net_dir(spec), NET_DIR_IN_CONTAINER, False),)
    limits = _limits(spec, spec.host.limits.gateway_memory_mb)
    inside = TenantContainer(
        key="network.gateway",
        name=gateway_container(spec),
        image=spec.host.gateway_image,
        command=gateway_command(spec),
        env={},
        labels=spec.labels("gateway"),
        mounts=mount,
        network="none",
        limits=limits,
    )
    publish = TenantContainer(
        key="network.publish",
        name=publish_container(spec),
        image=spec.host.gateway_image,
        command=publish_command(spec),
        env={},
        labels=spec.labels("publish"),
        mounts=mount,
        ready_on=(spec.bind_address, spec.app_port),
        limits=limits,
    )
    return inside, publish


def app_container(spec: TenantSpec) -> TenantContainer:
    """The Medusa app, in the tenant's namespace."""
    return TenantContainer(
        key="medusa.app",
        name=spec.app_container,
        image=spec.tenant.image,
        command=None,
        env=medusa_env(spec),
        labels={**spec.labels("app"), "omni.image": spec.tenant.image},
        limits=_limits(spec, spec.host.limits.app_memory_mb),
        joins=gateway_resources(spec)[0],
    )


def database_resource(spec: TenantSpec, migrations: Migrations) -> Resource[Any]:
    """The tenant's database: copied from its image's template database (built with
    ``migrations``' container) where the host keeps them, else created empty."""
    recipe = template_recipe(spec)
    if recipe is None:
        return TenantDatabase(database=spec.db_name, owner=spec.role_name)
    return TemplatedDatabase(database=spec.db_name, owner=spec.role_name,
                             image=spec.tenant.image, recipe=recipe, build=migrations,
                             marker_path=spec.migrated_marker_path)


def tenant_resources(spec: TenantSpec) -> list[Resource[Any]]:
    """Secrets, role, files, the network gateways, Redis, database, migrations, app,
    certificate, vhost, admin user, publishable key: in apply order (a ``plain`` app has
    no admin user or key). The database comes just before the migrations: building a
    template database runs the tenant's migrations container, which needs the tenant's
    Redis and its gateway's way to Postgres."""
    from omni.resources.certificate import Certificate
    from omni.resources.vhost import Vhost
    from omni.tenant.onboarding import onboarding_resources
    from omni.tenant.secrets_file import SecretsFile

    shown = dataclasses.replace(spec, secrets=masked_secrets())
    gateway, publish = gateway_resources(spec)
    env_file = render_env_file(spec)
    redis_conf = render_redis_conf(spec)
    migrations = migrations_resource(spec)
    return [
        # Keeps the admin invite/password fields medusa.admin writes (see SecretsFile).
        SecretsFile(path=spec.secrets_path, secrets=spec.secrets),
        TenantRole(role=spec.role_name, password=spec.secrets.db_password),
        MaintenanceClosed(),
        ManagedFile(
            key="medusa.env",
            path=spec.env_path,
            content=env_file.encode(),
            mode=0o600,
            display=render_env_file(shown),
        ),
        ManagedFile(
            key="redis.config",
            path=spec.redis_conf_path,
            content=redis_conf.encode(),
            mode=0o600,
            display=render_redis_conf(shown),
            owner=f"{spec.host.redis_uid}:{spec.host.redis_uid}",
        ),
        PrivateDirectory(key="network.sockets", path=net_dir(spec)),
        gateway,
        publish,
        TenantContainer(
            key="redis.container",
            name=spec.redis_container,
            image=spec.host.redis_image,
            # The image's entrypoint is redis-server (the official image's entrypoint also
            # takes a lone *.conf argument this way).
            command=(REDIS_CONF_IN_CONTAINER,),
            env={},
            labels=spec.labels("redis"),
            mounts=((spec.redis_conf_path, REDIS_CONF_IN_CONTAINER, True),),
            mounted_content_digest=hashlib.sha256(redis_conf.encode()).hexdigest(),
            # Runs as the uid that owns its 0600 config, not the image's named user.
            user=f"{spec.host.redis_uid}:{spec.host.redis_uid}",
            ready_probe=redis_probe(spec),
            limits=_limits(spec, spec.host.limits.redis_memory_mb),
            joins=gateway,
        ),
        database_resource(spec, migrations),
        migrations,
        app_container(spec),
        Certificate(spec),
        Vhost(spec),
        # Admin user and publishable key: last, so a failure there leaves the shop served.
        *(onboarding_resources(spec) if spec.tenant.app_kind == "medusa" else []),
    ]
