"""Cross-file inventory rules (pure functions), table-tested; each names both files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from omni.inventory.checks import (
    cross_file_problems,
    duplicate_domains,
    port_clashes,
    ports_outside_ranges,
    unknown_hosts,
)
from omni.inventory.loader import collect_inventory
from omni.inventory.models import Host, Tenant
from tests.test_inventory_loader import GOOD_HOSTS, write_inventory

KEY = GOOD_HOSTS["hosts"]["dev"]["host_keys"][0]
HOSTS = {
    name: Host.model_validate(
        {"name": name, "address": addr, "host_keys": [KEY], "acme": {"email": "o@example.com"},
         "app_ports": {"start": 9000, "end": 9099}, "redis_ports": {"start": 6400, "end": 6499}}
    )
    for name, addr in (("dev", "203.0.113.10"), ("netcup", "198.51.100.20"))
}


def tenant(slug: str, host: str = "dev", domains: tuple[str, ...] = (), **extra: Any) -> Tenant:
    return Tenant.model_validate({
        "slug": slug, "host": host, "domains": list(domains or (f"{slug}.example.com",)),
        "image": "medusa:1", **extra,
    })


def file_of(slug: str) -> str:
    return f"tenants/{slug}.yaml"


def by_slug(*tenants: Tenant) -> dict[str, Tenant]:
    return {t.slug: t for t in tenants}


CASES: list[tuple[str, dict[str, Tenant], list[list[str]]]] = [
    ("all-fine", by_slug(tenant("aa", app_port=9000, redis_port=6400),
                         tenant("bb", app_port=9001, redis_port=6401),
                         tenant("cc", host="netcup", app_port=9000, redis_port=6400)), []),
    ("unknown-host", by_slug(tenant("aa", host="hetzner")),
     [["tenants/aa.yaml", "host", "unknown host 'hetzner'", "hosts.yaml", "dev, netcup"]]),
    ("domain-twice-same-host", by_slug(tenant("aa", domains=("shop.example.com",)),
                                       tenant("bb", domains=("x.example.com",
                                                             "shop.example.com"))),
     [["tenants/bb.yaml", "domains.1", "'shop.example.com'", "tenant 'aa'", "tenants/aa.yaml"]]),
    ("domain-twice-across-hosts", by_slug(tenant("aa", domains=("shop.example.com",)),
                                          tenant("bb", host="netcup",
                                                 domains=("shop.example.com",))),
     [["tenants/bb.yaml", "domains.0", "tenants/aa.yaml"]]),
    ("same-app-port", by_slug(tenant("aa", app_port=9005), tenant("bb", app_port=9005)),
     [["tenants/bb.yaml", "app_port", "9005", "tenant 'aa'", "tenants/aa.yaml", "as app_port"]]),
    ("same-redis-port", by_slug(tenant("aa", redis_port=6405), tenant("bb", redis_port=6405)),
     [["tenants/bb.yaml", "redis_port", "6405", "tenants/aa.yaml", "as redis_port"]]),
    ("app-port-is-other-redis-port",
     by_slug(tenant("aa", redis_port=6410), tenant("bb", app_port=6410)),
     [["tenants/bb.yaml", "app_port", "6410", "tenants/aa.yaml", "as redis_port"],
      ["tenants/bb.yaml", "app_port", "outside", "9000-9099"]]),
    ("own-ports-equal", by_slug(tenant("aa", app_port=9009, redis_port=9009)),
     [["tenants/aa.yaml", "redis_port", "itself", "as app_port"],
      ["tenants/aa.yaml", "redis_port", "outside", "6400-6499"]]),
    ("same-port-on-different-hosts-is-fine",
     by_slug(tenant("aa", app_port=9000), tenant("bb", host="netcup", app_port=9000)), []),
    ("app-port-outside-range", by_slug(tenant("aa", app_port=8080)),
     [["tenants/aa.yaml", "app_port", "8080", "outside host 'dev'", "9000-9099", "hosts.yaml"]]),
    ("redis-port-outside-range", by_slug(tenant("aa", redis_port=6379)),
     [["tenants/aa.yaml", "redis_port", "6379", "6400-6499", "hosts.yaml"]]),
]


@pytest.mark.parametrize(("case", "tenants", "expected"), CASES, ids=[c[0] for c in CASES])
def test_cross_file_rule(case: str, tenants: dict[str, Tenant],
                         expected: list[list[str]]) -> None:
    problems = cross_file_problems(HOSTS, tenants, hosts_file="hosts.yaml", file_of=file_of)
    assert len(problems) == len(expected), problems
    for problem in problems:
        assert "\n" not in problem
    for parts in expected:
        assert any(all(p in problem for p in parts) for problem in problems), (parts, problems)


def test_individual_rules_are_pure_and_independent() -> None:
    tenants = by_slug(tenant("aa", host="nowhere", app_port=1))
    assert unknown_hosts(HOSTS, tenants, hosts_file="h", file_of=file_of)
    assert not ports_outside_ranges(HOSTS, tenants, hosts_file="h", file_of=file_of)
    assert not duplicate_domains(tenants, file_of=file_of)
    assert not port_clashes(tenants, file_of=file_of)


def test_without_a_valid_hosts_file_only_host_independent_rules_run() -> None:
    tenants = by_slug(tenant("aa", host="nowhere", domains=("a.example.com",)),
                      tenant("bb", host="nowhere", domains=("a.example.com",)))
    problems = cross_file_problems(None, tenants, hosts_file="h", file_of=file_of)
    assert len(problems) == 1
    assert "already used by tenant 'aa'" in problems[0]


def test_collect_inventory_reports_cross_file_problems_with_real_file_paths(
    tmp_path: Path,
) -> None:
    a = {"slug": "aa", "host": "dev", "domains": ["shop.example.com"], "image": "m:1"}
    b = {"slug": "bb", "host": "ghost", "domains": ["shop.example.com"], "image": "m:1"}
    inv = write_inventory(tmp_path, tenants={"aa.yaml": a, "bb.yaml": b})
    problems = collect_inventory(inv).problems
    assert len(problems) == 2
    assert any(str(inv / "tenants/bb.yaml") in p and "unknown host 'ghost'" in p
               and str(inv / "hosts.yaml") in p for p in problems)
    assert any(str(inv / "tenants/bb.yaml") in p and str(inv / "tenants/aa.yaml") in p
               for p in problems)


# Exact messages, one row per rule and kind (a reworded message is a visible change).
EXACT: list[tuple[str, dict[str, Tenant], list[str]]] = [
    ("unknown-host", by_slug(tenant("aa", host="hetzner")),
     ["tenants/aa.yaml: host: unknown host 'hetzner' (hosts.yaml defines: dev, netcup)"]),
    ("duplicate-domain", by_slug(tenant("aa", domains=("a.example.com",)),
                                 tenant("bb", domains=("b.example.com", "a.example.com"))),
     ["tenants/bb.yaml: domains.1: 'a.example.com' is already used by tenant 'aa' "
      "(tenants/aa.yaml); a domain belongs to one tenant"]),
    ("port-clash-other", by_slug(tenant("aa", app_port=9005), tenant("bb", redis_port=9005)),
     ["tenants/bb.yaml: redis_port: 9005 is outside host 'dev''s redis_ports range "
      "6400-6499 (hosts.yaml)",
      "tenants/bb.yaml: redis_port: port 9005 on host 'dev' is already used by tenant 'aa' "
      "(tenants/aa.yaml) as app_port; each port on a host belongs to one service"]),
    ("port-clash-itself", by_slug(tenant("aa", app_port=9009, standby_app_port=9009)),
     ["tenants/aa.yaml: standby_app_port: port 9009 on host 'dev' is already used by itself "
      "as app_port; each port on a host belongs to one service"]),
    ("standby-clashes-with-other-app", by_slug(tenant("aa", app_port=9010),
                                               tenant("bb", standby_app_port=9010)),
     ["tenants/bb.yaml: standby_app_port: port 9010 on host 'dev' is already used by tenant "
      "'aa' (tenants/aa.yaml) as app_port; each port on a host belongs to one service"]),
    ("app-port-out-of-range", by_slug(tenant("aa", app_port=8080)),
     ["tenants/aa.yaml: app_port: 8080 is outside host 'dev''s app_ports range 9000-9099 "
      "(hosts.yaml)"]),
    ("standby-out-of-range", by_slug(tenant("aa", app_port=9000, standby_app_port=9100)),
     ["tenants/aa.yaml: standby_app_port: 9100 is outside host 'dev''s standby_app_ports "
      "range 9000-9099 (hosts.yaml)"]),
    ("range-edges-are-inside", by_slug(tenant("aa", app_port=9000, standby_app_port=9099,
                                              redis_port=6499),
                                       tenant("bb", app_port=9001, redis_port=6400)), []),
    # A tenant on an unknown host is reported once, and the tenants after it still get
    # their range checks.
    ("unknown-host-then-out-of-range", by_slug(tenant("aa", host="ghost", app_port=1),
                                               tenant("bb", redis_port=7000)),
     ["tenants/aa.yaml: host: unknown host 'ghost' (hosts.yaml defines: dev, netcup)",
      "tenants/bb.yaml: redis_port: 7000 is outside host 'dev''s redis_ports range "
      "6400-6499 (hosts.yaml)"]),
]


@pytest.mark.parametrize(("case", "tenants", "expected"), EXACT, ids=[c[0] for c in EXACT])
def test_cross_file_messages_are_exact(case: str, tenants: dict[str, Tenant],
                                      expected: list[str]) -> None:
    problems = cross_file_problems(HOSTS, tenants, hosts_file="hosts.yaml", file_of=file_of)
    assert problems == expected


def test_unknown_host_with_no_hosts_defined_says_so() -> None:
    problems = unknown_hosts({}, by_slug(tenant("aa")), hosts_file="hosts.yaml",
                             file_of=file_of)
    assert problems == [
        "tenants/aa.yaml: host: unknown host 'dev' (hosts.yaml defines: no hosts)"
    ]


def test_rules_report_in_slug_order_and_every_rule_is_combined() -> None:
    tenants = {t.slug: t for t in (tenant("zz", host="ghost"), tenant("aa", host="ghost"))}
    assert unknown_hosts(HOSTS, tenants, hosts_file="h", file_of=file_of) == [
        "tenants/aa.yaml: host: unknown host 'ghost' (h defines: dev, netcup)",
        "tenants/zz.yaml: host: unknown host 'ghost' (h defines: dev, netcup)",
    ]
    both = by_slug(tenant("aa", host="ghost", domains=("d.example.com",), app_port=8000),
                   tenant("bb", domains=("d.example.com",), app_port=8000))
    problems = cross_file_problems(HOSTS, both, hosts_file="h", file_of=file_of)
    assert [p.split(": ")[1] for p in problems] == ["host", "app_port", "domains.0"]
