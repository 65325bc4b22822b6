"""Per-host port allocation for tenants' app and Redis containers.

The host keeps the truth in ``<state_dir>/ports.json`` (slug -> ports), changed only under
the host-wide ``ports`` lock. So a tenant keeps its ports even if its inventory file lost
them, and two runs with different inventories (or at the same time) never hand out the
same port. Inventory files record the ports too, for people and for ``inventory check``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from omni.errors import InvalidInput, StepFailed
from omni.inventory.loader import Inventory
from omni.inventory.models import Host, PortRange, Tenant

if TYPE_CHECKING:
    from omni.hosts.session import HostSession

PORTS_LOCK = "ports"
LOCK_WAIT_SECONDS = 60.0

Registry = dict[str, dict[str, int]]
STANDBY = "standby_app_port"


def registry_path(host: Host) -> str:
    return f"{host.state_dir}/ports.json"


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


def parse_registry(raw: bytes | None) -> Registry:
    if raw is None:
        return {}
    try:
        data = json.loads(raw)
        return {
            str(slug): {
                "app_port": int(p["app_port"]),
                "redis_port": int(p["redis_port"]),
                **({STANDBY: int(p[STANDBY])} if p.get(STANDBY) else {}),
            }
            for slug, p in data.items()
        }
    except (ValueError, TypeError, KeyError, AttributeError):
        raise StepFailed("the host's ports.json is not valid; fix or remove it") from None


def choose_ports(
    tenant: Tenant,
    host: Host,
    registry: Mapping[str, Mapping[str, int]],
    inventory_tenants: Iterable[Tenant],
    listening: set[int],
) -> tuple[int, int]:
    """The tenant's (app_port, redis_port). Pure.

    Kept if the tenant already has ports (its file, else the host's registry); else the
    lowest free in the host's ranges, skipping every other tenant's ports (registry and
    inventory) and anything listening on the host. Raises ``InvalidInput`` on a clash or a
    full range.
    """
    others, _ = _taken_by_others(tenant, registry, inventory_tenants)
    known = registry.get(tenant.slug, {})
    app_port = tenant.app_port or known.get("app_port")
    redis_port = tenant.redis_port or known.get("redis_port")
    for field, port in (("app_port", app_port), ("redis_port", redis_port)):
        if port is not None and port in others:
            raise InvalidInput(
                f"{field}: port {port} on host {host.name} belongs to tenant {others[port]!r}",
                field=field,
            )
    taken = set(others) | (listening - {p for p in (app_port, redis_port) if p})
    app_port = app_port or first_free(host.app_ports, taken)
    redis_port = redis_port or first_free(host.redis_ports, taken)
    if app_port is None or redis_port is None:
        kind = "app_ports" if app_port is None else "redis_ports"
        raise InvalidInput(
            f"host {host.name}: {kind} range is full; widen it in hosts.yaml", field=kind
        )
    return app_port, redis_port


def allocate_ports(
    session: HostSession, inventory: Inventory, tenant: Tenant, *, reserve: bool
) -> tuple[int, int]:
    """Choose the tenant's ports; with ``reserve`` also record them in the host's registry
    (under the host-wide ports lock). A dry run passes ``reserve=False``: reads only."""
    host = inventory.host(tenant.host)
    path = registry_path(host)

    def choose() -> tuple[Registry, tuple[int, int]]:
        registry = parse_registry(session.transport.read_file(path))
        known = registry.get(tenant.slug, {})
        settled = (tenant.app_port or known.get("app_port")) and (
            tenant.redis_port or known.get("redis_port")
        )
        # Only a new allocation needs to know what else listens on the host.
        listening = (
            set() if settled else listening_ports(session.transport.run(["ss", "-Htln"]).text())
        )
        return registry, choose_ports(tenant, host, registry, inventory.tenants.values(), listening)

    if not reserve:
        return choose()[1]
    with session.lock(PORTS_LOCK, wait_seconds=LOCK_WAIT_SECONDS):
        registry, (app_port, redis_port) = choose()
        wanted = {"app_port": app_port, "redis_port": redis_port}
        standby = tenant.standby_app_port or registry.get(tenant.slug, {}).get(STANDBY)
        if standby:
            wanted[STANDBY] = standby
        if registry.get(tenant.slug) != wanted:
            registry[tenant.slug] = wanted
            _write_registry(session, host, registry)
        return app_port, redis_port


def _write_registry(session: HostSession, host: Host, registry: Registry) -> None:
    session.transport.run(["mkdir", "-p", "-m", "700", host.state_dir])
    session.transport.write_file(
        registry_path(host),
        json.dumps(registry, indent=2, sort_keys=True).encode() + b"\n",
        mode=0o600,
    )


def allocate_standby_port(
    session: HostSession, inventory: Inventory, tenant: Tenant, *, reserve: bool = True
) -> int:
    """The tenant's standby app port (blue/green): kept if it has one (its file, else the
    host's registry), else the lowest free port of the host's ``app_ports`` range, recorded
    in the registry under the host's ports lock (``reserve=False``, for a dry run: chosen
    the same way, recorded nowhere, no lock). Raises ``InvalidInput`` when the range is
    full."""
    host = inventory.host(tenant.host)
    if not reserve:
        registry = parse_registry(session.transport.read_file(registry_path(host)))
        return _choose_standby(session, inventory, tenant, registry)
    with session.lock(PORTS_LOCK, wait_seconds=LOCK_WAIT_SECONDS):
        registry = parse_registry(session.transport.read_file(registry_path(host)))
        mine = registry.get(tenant.slug, {})
        standby = _choose_standby(session, inventory, tenant, registry)
        if mine.get(STANDBY) != standby and tenant.app_port and tenant.redis_port:
            registry[tenant.slug] = {"app_port": tenant.app_port,
                                     "redis_port": tenant.redis_port, STANDBY: standby}
            _write_registry(session, host, registry)
        return standby


def _choose_standby(
    session: HostSession, inventory: Inventory, tenant: Tenant,
    registry: Mapping[str, Mapping[str, int]],
) -> int:
    host = inventory.host(tenant.host)
    standby = tenant.standby_app_port or registry.get(tenant.slug, {}).get(STANDBY)
    if standby is not None:
        return standby
    _, taken = _taken_by_others(tenant, registry, inventory.tenants.values())
    taken |= listening_ports(session.transport.run(["ss", "-Htln"]).text())
    taken |= {p for p in (tenant.app_port, tenant.redis_port) if p}
    standby = first_free(host.app_ports, taken)
    if standby is None:
        raise InvalidInput(
            f"host {host.name}: app_ports range is full (each tenant needs a second "
            "port, for blue/green deploys); widen it in hosts.yaml", field="app_ports",
        )
    return standby


def record_swap(session: HostSession, host: Host, tenant: Tenant) -> None:
    """Record the tenant's ports after a blue/green switch (``app_port`` is the live one)."""
    with session.lock(PORTS_LOCK, wait_seconds=LOCK_WAIT_SECONDS):
        registry = parse_registry(session.transport.read_file(registry_path(host)))
        entry = {"app_port": tenant.app_port, "redis_port": tenant.redis_port}
        if tenant.standby_app_port:
            entry[STANDBY] = tenant.standby_app_port
        registry[tenant.slug] = {k: int(v) for k, v in entry.items() if v}
        _write_registry(session, host, registry)


def _taken_by_others(
    tenant: Tenant, registry: Mapping[str, Mapping[str, int]], inventory_tenants: Iterable[Tenant]
) -> tuple[dict[int, str], set[int]]:
    others: dict[int, str] = {}
    for slug, ports in registry.items():
        if slug != tenant.slug:
            others.update({port: slug for port in ports.values()})
    for other in inventory_tenants:
        if other.slug != tenant.slug and other.host == tenant.host:
            others.update({
                p: other.slug
                for p in (other.app_port, other.redis_port, other.standby_app_port)
                if p
            })
    return others, set(others)


def release_ports(session: HostSession, host: Host, slug: str) -> None:
    """Forget the tenant's ports in the host's registry (after a destroy)."""
    path = registry_path(host)
    with session.lock(PORTS_LOCK, wait_seconds=LOCK_WAIT_SECONDS):
        registry = parse_registry(session.transport.read_file(path))
        if registry.pop(slug, None) is not None:
            _write_registry(session, host, registry)
