"""Each bad inventory file gives ONE line naming the file, the field and the rule."""

from __future__ import annotations

import copy
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from omni.errors import InventoryError
from omni.inventory.loader import collect_inventory, load_inventory, save_tenant
from omni.inventory.models import Tenant

REPO = Path(__file__).resolve().parent.parent
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGOMqkKFc1Lz6NlqYq8S2WCZlL6UrbKhIA4VUURy9MDM test"

GOOD_HOSTS: dict[str, Any] = {
    "version": 1,
    "hosts": {
        "dev": {
            "address": "203.0.113.10",
            "identity": "keys/id_ed25519",
            "host_keys": [KEY],
            "acme": {"email": "ops@example.com", "ca_bundle": "ca/pebble.pem"},
        },
        "netcup": {
            "address": "198.51.100.20",
            "identity": "/abs/id",
            "host_keys": [KEY],
            "acme": {"email": "ops@example.com"},
        },
    },
}
GOOD_TENANT: dict[str, Any] = {
    "slug": "acme",
    "host": "dev",
    "domains": ["shop.acme.example.com"],
    "image": "medusa:1",
    "app_port": 9000,
    "redis_port": 6400,
}


def write_inventory(
    root: Path, hosts: Any = None, tenants: dict[str, Any] | None = None
) -> Path:
    inv = root / "inv"
    (inv / "tenants").mkdir(parents=True)
    (inv / "ca").mkdir()
    (inv / "ca" / "pebble.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    hosts = GOOD_HOSTS if hosts is None else hosts
    (inv / "hosts.yaml").write_text(hosts if isinstance(hosts, str) else yaml.safe_dump(hosts))
    for name, body in (tenants if tenants is not None else {"acme.yaml": GOOD_TENANT}).items():
        text = body if isinstance(body, str) else yaml.safe_dump(body)
        (inv / "tenants" / name).write_text(text)
    return inv


def with_path(data: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of ``data`` with the dotted ``path`` set (``value=...`` deletes it)."""
    out = copy.deepcopy(data)
    node: Any = out
    parts = path.split(".")
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if value is ...:
        del node[parts[-1]]
    elif isinstance(node, list):
        node[int(parts[-1])] = value
    else:
        node[parts[-1]] = value
    return out


def test_valid_inventory_loads_and_resolves_local_paths_against_the_inventory(
    tmp_path: Path,
) -> None:
    inv = write_inventory(tmp_path)
    inventory = load_inventory(inv)
    assert sorted(inventory.hosts) == ["dev", "netcup"]
    assert inventory.hosts["dev"].name == "dev"
    assert inventory.hosts["dev"].identity == str((inv / "keys/id_ed25519").absolute())
    assert inventory.hosts["dev"].acme.ca_bundle == str((inv / "ca/pebble.pem").absolute())
    assert inventory.hosts["netcup"].identity == "/abs/id"
    assert inventory.tenants["acme"].domains == ["shop.acme.example.com"]


def test_shipped_example_inventory_is_valid() -> None:
    report = collect_inventory(REPO / "inventory")
    assert report.problems == []
    assert sorted(report.hosts or {}) == ["dev", "netcup"]
    assert len(report.tenants) >= 2


HOSTS_CASES = [
    ("not-yaml", "hosts: [unclosed", ["hosts.yaml", "not valid YAML", "line"]),
    ("a-list", "- dev\n- netcup\n", ["hosts.yaml", "must be a YAML mapping"]),
    ("duplicate-host", "hosts:\n  dev: {}\n  dev: {}\n", ["hosts.yaml", "duplicate key 'dev'"]),
    ("version-2", with_path(GOOD_HOSTS, "version", 2), ["hosts.yaml", "version", "1"]),
    ("unknown-field", with_path(GOOD_HOSTS, "hosts.dev.adress", "x"),
     ["hosts.yaml", "hosts.dev.adress", "unknown field"]),
    ("missing-acme", with_path(GOOD_HOSTS, "hosts.dev.acme", ...),
     ["hosts.yaml", "hosts.dev.acme", "required"]),
    ("address-injection", with_path(GOOD_HOSTS, "hosts.dev.address", "-oProxyCommand=id"),
     ["hosts.yaml", "hosts.dev.address", "IP address or a hostname"]),
    ("address-shell", with_path(GOOD_HOSTS, "hosts.dev.address", "h;id"),
     ["hosts.yaml", "hosts.dev.address", "IP address or a hostname"]),
    ("no-pins", with_path(GOOD_HOSTS, "hosts.dev.host_keys", []),
     ["hosts.yaml", "hosts.dev", "host_keys", "pinned key is required"]),
    ("bad-pin", with_path(GOOD_HOSTS, "hosts.dev.host_keys", ["not-a-key"]),
     ["hosts.yaml", "hosts.dev.host_keys.0", "OpenSSH public key"]),
    ("port-range-reversed", with_path(GOOD_HOSTS, "hosts.dev.app_ports", {"start": 9100,
                                                                         "end": 9000}),
     ["hosts.yaml", "hosts.dev.app_ports", "end must be >= start"]),
    ("ranges-overlap", with_path(GOOD_HOSTS, "hosts.dev.redis_ports", {"start": 9400,
                                                                       "end": 9600}),
     ["hosts.yaml", "hosts.dev", "must not overlap"]),
    ("port-too-big", with_path(GOOD_HOSTS, "hosts.dev.port", 70000),
     ["hosts.yaml", "hosts.dev.port", "65535"]),
    ("path-traversal", with_path(GOOD_HOSTS, "hosts.dev.nginx", {"sites_dir": "/etc/../root"}),
     ["hosts.yaml", "hosts.dev.nginx.sites_dir", "absolute path"]),
    ("relative-path", with_path(GOOD_HOSTS, "hosts.dev.state_dir", "var/lib/omni"),
     ["hosts.yaml", "hosts.dev.state_dir", "absolute path"]),
    ("path-shell", with_path(GOOD_HOSTS, "hosts.dev.state_dir", "/var/$(id)"),
     ["hosts.yaml", "hosts.dev.state_dir", "absolute path"]),
    ("acme-http", with_path(GOOD_HOSTS, "hosts.dev.acme.directory_url", "http://x/dir"),
     ["hosts.yaml", "hosts.dev.acme.directory_url", "pattern"]),
    ("acme-email", with_path(GOOD_HOSTS, "hosts.dev.acme.email", "not-an-email"),
     ["hosts.yaml", "hosts.dev.acme.email", "pattern"]),
    ("bad-user", with_path(GOOD_HOSTS, "hosts.dev.user", "root;id"),
     ["hosts.yaml", "hosts.dev.user", "pattern"]),
    ("uppercase-host-name", {"hosts": {"Dev": GOOD_HOSTS["hosts"]["dev"]}},
     ["hosts.yaml", "hosts.Dev", "lowercase letters"]),
    ("concurrency-zero", with_path(GOOD_HOSTS, "hosts.dev.concurrency", 0),
     ["hosts.yaml", "hosts.dev.concurrency", "greater than or equal to 1"]),
    ("redis-image", with_path(GOOD_HOSTS, "hosts.dev.redis_image", "redis:7;id"),
     ["hosts.yaml", "hosts.dev.redis_image", "Docker image reference"]),
]

TENANT_CASES = [
    ("slug-vs-filename", with_path(GOOD_TENANT, "slug", "other"),
     ["acme.yaml", "slug", "must equal the file name"]),
    ("slug-uppercase", with_path(GOOD_TENANT, "slug", "Acme"), ["acme.yaml", "slug", "lowercase"]),
    ("domain-uppercase", with_path(GOOD_TENANT, "domains.0", "Shop.example.com"),
     ["acme.yaml", "domains.0", "lowercase"]),
    ("domain-cyrillic", with_path(GOOD_TENANT, "domains.0", "sh\u043ep.example.com"),
     ["acme.yaml", "domains.0", "ASCII"]),
    ("domain-wildcard", with_path(GOOD_TENANT, "domains.0", "*.example.com"),
     ["acme.yaml", "domains.0", "no wildcard"]),
    ("domain-catch-all", with_path(GOOD_TENANT, "domains.0", "_"),
     ["acme.yaml", "domains.0", "hostname"]),
    ("domain-regex", with_path(GOOD_TENANT, "domains.0", "~^(.+)\\.example\\.com$"),
     ["acme.yaml", "domains.0", "hostname"]),
    ("domain-nginx-injection",
     with_path(GOOD_TENANT, "domains.0", "a.example.com; location / { return 200; }"),
     ["acme.yaml", "domains.0", "hostname"]),
    ("domain-trailing-dot", with_path(GOOD_TENANT, "domains.0", "shop.example.com."),
     ["acme.yaml", "domains.0", "must not end with a dot"]),
    ("domain-ip", with_path(GOOD_TENANT, "domains.0", "203.0.113.7"),
     ["acme.yaml", "domains.0", "not an IP address"]),
    ("domain-long-label", with_path(GOOD_TENANT, "domains.0", "a" * 64 + ".example.com"),
     ["acme.yaml", "domains.0", "63"]),
    ("domains-empty", with_path(GOOD_TENANT, "domains", []),
     ["acme.yaml", "domains", "at least 1"]),
    ("domains-repeat", with_path(GOOD_TENANT, "domains", ["a.example.com", "a.example.com"]),
     ["acme.yaml", "domains must not repeat"]),
    ("image-shell", with_path(GOOD_TENANT, "image", "medusa:1 && rm -rf /"),
     ["acme.yaml", "image", "Docker image reference"]),
    ("image-option", with_path(GOOD_TENANT, "image", "--privileged"),
     ["acme.yaml", "image", "Docker image reference"]),
    ("image-missing", with_path(GOOD_TENANT, "image", ...),
     ["acme.yaml", "image", "required"]),
    ("host-bad", with_path(GOOD_TENANT, "host", "dev$(id)"), ["acme.yaml", "host", "lowercase"]),
    ("app-port-range", with_path(GOOD_TENANT, "app_port", 70000),
     ["acme.yaml", "app_port", "65535"]),
    ("app-port-string", with_path(GOOD_TENANT, "app_port", "9000; id"),
     ["acme.yaml", "app_port", "integer"]),
    ("env-reserved", with_path(GOOD_TENANT, "env", {"DATABASE_URL": "postgres://x"}),
     ["acme.yaml", "env.DATABASE_URL", "key is set by omni itself"]),
    ("env-key-lower", with_path(GOOD_TENANT, "env", {"path": "x"}),
     ["acme.yaml", "env.path", "key must be uppercase"]),
    ("env-value-newline", with_path(GOOD_TENANT, "env", {"X": "a\nINJECTED=1"}),
     ["acme.yaml", "env.X", "one line"]),
    ("unknown-field", with_path(GOOD_TENANT, "domain", "x.example.com"),
     ["acme.yaml", "domain", "unknown field"]),
    ("not-a-mapping", "just a string\n", ["acme.yaml", "must be a YAML mapping"]),
    ("bad-yaml", "slug: [\n", ["acme.yaml", "not valid YAML"]),
    ("duplicate-key", "slug: acme\nslug: evil\n", ["acme.yaml", "duplicate key 'slug'"]),
]


def _assert_one_line(message: str, expected: list[str]) -> None:
    assert "\n" not in message
    for part in expected:
        assert part in message, f"{part!r} not in {message!r}"


@pytest.mark.parametrize(
    ("case", "hosts", "expected"), HOSTS_CASES, ids=[c[0] for c in HOSTS_CASES]
)
def test_bad_hosts_file_gives_one_line_naming_file_field_and_rule(
    tmp_path: Path, case: str, hosts: Any, expected: list[str]
) -> None:
    inv = write_inventory(tmp_path, hosts=hosts, tenants={})
    with pytest.raises(InventoryError) as info:
        load_inventory(inv)
    _assert_one_line(info.value.message, [str(inv / "hosts.yaml"), *expected])
    assert info.value.exit_code == 2


@pytest.mark.parametrize(
    ("case", "tenant", "expected"), TENANT_CASES, ids=[c[0] for c in TENANT_CASES]
)
def test_bad_tenant_file_gives_one_line_naming_file_field_and_rule(
    tmp_path: Path, case: str, tenant: Any, expected: list[str]
) -> None:
    inv = write_inventory(tmp_path, tenants={"acme.yaml": tenant})
    with pytest.raises(InventoryError) as info:
        load_inventory(inv)
    _assert_one_line(info.value.message, [str(inv / "tenants" / "acme.yaml"), *expected])


def test_secret_looking_env_values_are_not_echoed_in_errors(tmp_path: Path) -> None:
    tenant = with_path(GOOD_TENANT, "env", {"API_KEY": "sk_live_SECRET\nX=1"})
    inv = write_inventory(tmp_path, tenants={"acme.yaml": tenant})
    with pytest.raises(InventoryError) as info:
        load_inventory(inv)
    assert "sk_live_SECRET" not in info.value.message
    assert "env.API_KEY" in info.value.message


def test_tenant_file_with_wrong_extension_is_reported(tmp_path: Path) -> None:
    inv = write_inventory(tmp_path, tenants={"acme.yml": GOOD_TENANT})
    report = collect_inventory(inv)
    assert report.problems == [f"{inv / 'tenants' / 'acme.yml'}: tenant files must be named "
                               "<slug>.yaml"]


def test_missing_inventory_and_missing_hosts_file_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match="inventory directory not found"):
        load_inventory(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InventoryError, match=r"hosts\.yaml: file not found"):
        load_inventory(tmp_path / "empty")


def test_load_reports_the_first_problem_and_how_many_more(tmp_path: Path) -> None:
    bad_a = with_path(GOOD_TENANT, "image", "BAD")
    bad_b = with_path(with_path(GOOD_TENANT, "slug", "bee"), "domains.0", "*.x.com")
    inv = write_inventory(tmp_path, tenants={"acme.yaml": bad_a, "bee.yaml": bad_b})
    with pytest.raises(InventoryError) as info:
        load_inventory(inv)
    assert "acme.yaml: image" in info.value.message
    assert "and 1 more problem: run `omni inventory check`" in info.value.message
    assert len(collect_inventory(inv).problems) == 2


def test_several_errors_in_one_file_say_how_many_more(tmp_path: Path) -> None:
    tenant = {"slug": "acme", "host": "dev", "domains": ["BAD"], "image": "BAD"}
    inv = write_inventory(tmp_path, tenants={"acme.yaml": tenant})
    with pytest.raises(InventoryError, match=r"and 1 more problem in this input"):
        load_inventory(inv)


def test_a_broken_hosts_file_does_not_bury_the_report_in_unknown_host_noise(
    tmp_path: Path,
) -> None:
    inv = write_inventory(tmp_path, hosts="hosts: [")
    report = collect_inventory(inv)
    assert len(report.problems) == 1
    assert "not valid YAML" in report.problems[0]


def test_save_tenant_writes_atomically_and_round_trips(tmp_path: Path) -> None:
    inv = write_inventory(tmp_path, tenants={})
    tenant = Tenant.model_validate(
        {**GOOD_TENANT, "slug": "new-shop", "env": {"MEDUSA_LOG_LEVEL": "debug"}}
    )
    path = save_tenant(inv, tenant)
    assert path == inv / "tenants" / "new-shop.yaml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in (inv / "tenants").iterdir()] == ["new-shop.yaml"]  # no temp left
    loaded = load_inventory(inv).tenants["new-shop"]
    assert loaded == tenant
    assert "migrate_command" not in path.read_text()  # defaults are left out
    # Overwrite in place (e.g. after port allocation).
    save_tenant(inv, tenant.model_copy(update={"app_port": 9001}))
    assert load_inventory(inv).tenants["new-shop"].app_port == 9001


def test_a_missing_ca_bundle_is_refused_naming_the_field(tmp_path: Path) -> None:
    inv = write_inventory(tmp_path)
    (inv / "ca" / "pebble.pem").unlink()
    with pytest.raises(InventoryError, match=r"hosts\.dev\.acme\.ca_bundle: no such file"):
        load_inventory(inv)


def test_a_host_name_differing_from_its_key_is_refused(tmp_path: Path) -> None:
    inv = write_inventory(tmp_path, hosts=with_path(GOOD_HOSTS, "hosts.dev.name", "netcup"))
    with pytest.raises(InventoryError, match="differs from the key"):
        load_inventory(inv)
