"""Use cases: ``omni tenant list`` and ``omni tenant show``.

Read-only. Health and certificate expiry are probed from the machine running omni over
HTTPS through each host's nginx (the same path customers take); ``show`` also reads the
tenant's containers over SSH.
"""

from __future__ import annotations

import socket
import ssl
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from omni.errors import InvalidInput
from omni.inventory.loader import load_inventory
from omni.inventory.models import Host, Tenant
from omni.output.result import Result
from omni.probe import ProbeError, https_get, tls_context

_PROBE_TIMEOUT = 5.0
_PROBE_WORKERS = 16


def certificate_expiry(host: Host, domain: str) -> str | None:
    """``notAfter`` (ISO 8601) of the certificate nginx serves for ``domain``, verified."""
    address = host.nginx.listen_address or host.address
    try:
        with (
            socket.create_connection(
                (address, host.nginx.https_port), timeout=_PROBE_TIMEOUT
            ) as raw,
            tls_context(host.health.ca_bundle).wrap_socket(raw, server_hostname=domain) as tls,
        ):
            cert = tls.getpeercert()
    except (OSError, ssl.SSLError):
        return None
    not_after = cert.get("notAfter") if cert else None
    if not isinstance(not_after, str):
        return None
    return datetime.fromtimestamp(ssl.cert_time_to_seconds(not_after), UTC).isoformat()


def probe_tenant(host: Host, tenant: Tenant) -> dict[str, Any]:
    domain = tenant.domains[0]
    address = host.nginx.listen_address or host.address
    try:
        answer = https_get(
            address,
            host.nginx.https_port,
            domain,
            host.health.path,
            host.health.ca_bundle,
            timeout=_PROBE_TIMEOUT,
        )
        health = "healthy" if answer.status == 200 else f"HTTP {answer.status}"
    except ProbeError as exc:
        health = f"unreachable: {exc}"
    return {"health": health, "certificate_expires": certificate_expiry(host, domain)}


def _row(tenant: Tenant) -> dict[str, Any]:
    return {
        "slug": tenant.slug,
        "host": tenant.host,
        "domains": list(tenant.domains),
        "image": tenant.image,
        "app_port": tenant.app_port,
        "redis_port": tenant.redis_port,
    }


def list_tenants(inventory_path: Path, *, probe: bool = True) -> Result:
    inventory = load_inventory(inventory_path)
    tenants = sorted(inventory.tenants.values(), key=lambda t: (t.host, t.slug))
    rows = [_row(t) for t in tenants]
    if probe and tenants:
        with ThreadPoolExecutor(max_workers=min(_PROBE_WORKERS, len(tenants))) as pool:
            probes = list(pool.map(lambda t: probe_tenant(inventory.host(t.host), t), tenants))
        for row, found in zip(rows, probes, strict=True):
            row.update(found)
    return Result.success("tenant list", data={"tenants": rows})


def show_tenant(inventory_path: Path, slug: str) -> Result:
    inventory = load_inventory(inventory_path)
    tenant = inventory.tenants.get(slug)
    if tenant is None:
        raise InvalidInput(f"SLUG: no tenant {slug!r} in {inventory.path}/tenants", field="slug")
    host = inventory.host(tenant.host)
    row = _row(tenant) | probe_tenant(host, tenant)
    row["url"] = f"https://{tenant.domains[0]}"
    row["env_overrides"] = sorted(tenant.env)  # keys only: values may be sensitive
    from omni.hosts.session import HostSession
    from omni.tenant.storefront import read_storefront, storefront_path

    with HostSession(host) as session:
        # Public by design (every storefront page carries it); the admin invite is not shown.
        storefront = read_storefront(session.transport, storefront_path(host, slug))
        row["admin_email"] = tenant.admin_email
        row["publishable_key"] = storefront.publishable_key if storefront else None
        row["containers"] = [
            {
                "name": c.name,
                "status": c.status,
                "image": c.image,
                "component": c.labels.get("omni.component"),
            }
            for c in session.docker().list_containers({"omni.tenant": slug})
        ]
    return Result.success("tenant show", data={"tenant": row})
