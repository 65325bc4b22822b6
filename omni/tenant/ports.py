"""Per-host port allocation for tenants' app and Redis containers."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from omni.errors import InvalidInput
from omni.inventory.loader import Inventory
from omni.inventory.models import PortRange, Tenant

if TYPE_CHECKING:
    from omni.hosts.session import HostSession


def listening_ports(ss_output: str) -> set[int]:
    """Ports in ``ss -Htln`` output (4th column is Local Address:Port)."""
    ports = set()
    for line in ss_output.splitlines():
        columns = line.split()
        if len(columns) >= 4 and ":" in columns[3]:
            tail = columns[3].rsplit(":", 1)[1]
            if tail.isdigit():
                ports.add(int(tail))
    return ports


def first_free(port_range: PortRange, taken: Iterable[int]) -> int | None:
    used = set(taken)
    return next((p for p in range(port_range.start, port_range.end + 1) if p not in used), None)


def allocate_ports(session: HostSession, inventory: Inventory, tenant: Tenant) -> tuple[int, int]:
    """The tenant's (app_port, redis_port): kept if already allocated, else the lowest free
    in the host's ranges, skipping other tenants' ports and anything listening on the host."""
    if tenant.app_port is not None and tenant.redis_port is not None:
        return tenant.app_port, tenant.redis_port
    host = inventory.host(tenant.host)
    taken: set[int] = set()
    for other in inventory.tenants.values():
        if other.slug != tenant.slug and other.host == tenant.host:
            taken.update(p for p in (other.app_port, other.redis_port) if p is not None)
    taken |= listening_ports(session.transport.run(["ss", "-Htln"]).text())
    app_port = tenant.app_port or first_free(host.app_ports, taken)
    redis_port = tenant.redis_port or first_free(host.redis_ports, taken)
    if app_port is None or redis_port is None:
        kind = "app_ports" if app_port is None else "redis_ports"
        raise InvalidInput(
            f"host {host.name}: {kind} range is full; widen it in hosts.yaml", field=kind
        )
    return app_port, redis_port
