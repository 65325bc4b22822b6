"""Cross-file inventory rules: pure functions over already-validated models.

Each rule returns problems as one-line strings that name both files involved, so a reader
can fix the inventory without searching. Table-tested in ``tests/test_inventory_checks.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from omni.inventory.models import Host, Tenant

FileOf = Callable[[str], str]  # tenant slug -> the file to name in a message


def unknown_hosts(
    hosts: Mapping[str, Host], tenants: Mapping[str, Tenant], *, hosts_file: str, file_of: FileOf
) -> list[str]:
    """A tenant whose ``host`` is not in hosts.yaml."""
    known = ", ".join(sorted(hosts)) or "no hosts"
    return [
        f"{file_of(slug)}: host: unknown host {t.host!r} ({hosts_file} defines: {known})"
        for slug, t in sorted(tenants.items())
        if t.host not in hosts
    ]


def duplicate_domains(tenants: Mapping[str, Tenant], *, file_of: FileOf) -> list[str]:
    """A domain served by two tenants, on the same host or on different hosts."""
    owner: dict[str, str] = {}
    problems: list[str] = []
    for slug, tenant in sorted(tenants.items()):
        for i, domain in enumerate(tenant.domains):
            first = owner.setdefault(domain, slug)
            if first != slug:
                problems.append(
                    f"{file_of(slug)}: domains.{i}: {domain!r} is already used by tenant "
                    f"{first!r} ({file_of(first)}); a domain belongs to one tenant"
                )
    return problems


def port_clashes(tenants: Mapping[str, Tenant], *, file_of: FileOf) -> list[str]:
    """Two tenants on one host sharing a port (app or redis, in any combination).

    A tenant whose own app_port equals its own redis_port is reported as well.
    """
    owner: dict[tuple[str, int], tuple[str, str]] = {}
    problems: list[str] = []
    for slug, tenant in sorted(tenants.items()):
        for kind, port in (
            ("app_port", tenant.app_port),
            ("redis_port", tenant.redis_port),
            ("standby_app_port", tenant.standby_app_port),
        ):
            if port is None:
                continue
            key = (tenant.host, port)
            if key not in owner:
                owner[key] = (slug, kind)
                continue
            other, other_kind = owner[key]
            where = "itself" if other == slug else f"tenant {other!r} ({file_of(other)})"
            problems.append(
                f"{file_of(slug)}: {kind}: port {port} on host {tenant.host!r} is already "
                f"used by {where} as {other_kind}; each port on a host belongs to one service"
            )
    return problems


def ports_outside_ranges(
    hosts: Mapping[str, Host], tenants: Mapping[str, Tenant], *, hosts_file: str, file_of: FileOf
) -> list[str]:
    """A tenant port outside its host's ``app_ports`` / ``redis_ports`` range."""
    problems: list[str] = []
    for slug, tenant in sorted(tenants.items()):
        host = hosts.get(tenant.host)
        if host is None:
            continue  # reported by unknown_hosts
        for kind, port, allowed in (
            ("app_port", tenant.app_port, host.app_ports),
            ("redis_port", tenant.redis_port, host.redis_ports),
            ("standby_app_port", tenant.standby_app_port, host.app_ports),
        ):
            if port is not None and port not in allowed:
                problems.append(
                    f"{file_of(slug)}: {kind}: {port} is outside host {host.name!r}'s "
                    f"{kind}s range {allowed.start}-{allowed.end} ({hosts_file})"
                )
    return problems


def cross_file_problems(
    hosts: Mapping[str, Host] | None,
    tenants: Mapping[str, Tenant],
    *,
    hosts_file: str,
    file_of: FileOf,
) -> list[str]:
    """Every cross-file rule. ``hosts=None`` (hosts.yaml itself is broken) skips the rules
    that need it, so one bad file does not bury the report in follow-on noise."""
    problems: list[str] = []
    if hosts is not None:
        problems += unknown_hosts(hosts, tenants, hosts_file=hosts_file, file_of=file_of)
        problems += ports_outside_ranges(hosts, tenants, hosts_file=hosts_file, file_of=file_of)
    problems += duplicate_domains(tenants, file_of=file_of)
    problems += port_clashes(tenants, file_of=file_of)
    return problems
