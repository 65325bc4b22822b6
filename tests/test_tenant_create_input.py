"""Bad input to ``omni tenant create`` is refused before any connection is opened.

The inventory's hosts point at loopback addresses where nothing listens: had omni tried to
connect, it would exit 5 (host unreachable) instead of 2, so every row also proves that no
host was contacted. No tenant file may appear either.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from omni.cli.app import run
from tests.lab import fresh_identity

HOSTS = {
    "version": 1,
    "hosts": {
        name: {
            "address": address,
            "host_keys": [
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ6Yh0bLsDkCi0bWQkzXb2W7yJj0ZrSgeZ2b8d5m3Aq1"
            ],
            "acme": {"email": "ops@example.com"},
            "app_ports": {"start": 9000, "end": 9001},
            "redis_ports": {"start": 6400, "end": 6401},
        }
        for name, address in (("dev", "127.0.0.251"), ("netcup", "127.0.0.252"))
    },
}
TAKEN = {
    "slug": "taken",
    "host": "netcup",
    "domains": ["shop.taken.example"],
    "image": "medusa:1",
    "app_port": 9000,
    "redis_port": 6400,
}


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    (tmp_path / "tenants").mkdir()
    identity = fresh_identity(tmp_path)
    hosts = {
        "version": 1,
        "hosts": {name: {**body, "identity": identity} for name, body in HOSTS["hosts"].items()},
    }
    (tmp_path / "hosts.yaml").write_text(yaml.safe_dump(hosts))
    (tmp_path / "tenants" / "taken.yaml").write_text(yaml.safe_dump(TAKEN))
    return tmp_path


GOOD = {"slug": "acme", "host": "dev", "domain": "shop.acme.example", "image": "medusa:1"}

CASES = [
    # (what, overrides, text the one-line error must contain)
    ("uppercase slug", {"slug": "Acme"}, "SLUG: must be lowercase"),
    ("sql in slug", {"slug": "a'; drop role x;--"}, "SLUG:"),
    ("shell in slug", {"slug": "a$(touch x)"}, "SLUG:"),
    ("overlong slug", {"slug": "a" * 41}, "SLUG:"),
    ("trailing hyphen", {"slug": "acme-"}, "SLUG:"),
    ("unicode lookalike slug", {"slug": "\u0430cme"}, "SLUG:"),  # Cyrillic a
    ("unknown host", {"host": "staging"}, "host: unknown host 'staging'"),
    ("host metacharacters", {"host": "dev;id"}, "--host:"),
    ("uppercase domain", {"domain": "Shop.acme.example"}, "--domain: must be lowercase"),
    ("trailing dot", {"domain": "shop.acme.example."}, "--domain: must not end with a dot"),
    ("wildcard", {"domain": "*.acme.example"}, "--domain:"),
    ("catch-all", {"domain": "_"}, "--domain:"),
    ("regex server_name", {"domain": "~^(.*)$"}, "--domain:"),
    ("nginx injection", {"domain": "a.example; location / { }"}, "--domain:"),
    ("template injection", {"domain": "{{7*7}}.example"}, "--domain:"),
    ("newline", {"domain": "a.example\nreturn 200"}, "--domain:"),
    ("64-byte label", {"domain": "a" * 64 + ".example"}, "--domain:"),
    ("unicode domain", {"domain": "sh\u043ep.example"}, "--domain: must be ASCII"),
    ("ip address", {"domain": "127.0.0.1"}, "--domain:"),
    ("single label", {"domain": "localhost"}, "--domain:"),
    (
        "domain of another tenant on the other host",
        {"domain": "shop.taken.example"},
        "--domain: 'shop.taken.example' is already served by tenant 'taken' on host netcup",
    ),
    ("image with shell", {"image": "medusa:1;rm -rf /"}, "--image:"),
    ("image uppercase path", {"image": "Medusa:1"}, "--image:"),
]


def _argv(inventory: Path, values: dict[str, str]) -> list[str]:
    return [
        "--inventory",
        str(inventory),
        "tenant",
        "create",
        "--host",
        values["host"],
        "--domain",
        values["domain"],
        "--image",
        values["image"],
        "--",
        values["slug"],
    ]


@pytest.mark.parametrize(("what", "overrides", "expected"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_touches_nothing(
    inventory: Path,
    capsys: pytest.CaptureFixture[str],
    what: str,
    overrides: dict[str, str],
    expected: str,
) -> None:
    before = sorted(p.name for p in (inventory / "tenants").iterdir())
    code = run(_argv(inventory, {**GOOD, **overrides}))
    err = capsys.readouterr().err.strip()
    assert code == 2, f"{what}: exit {code}: {err}"
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error[invalid_input]: ")
    assert expected in err
    assert "Traceback" not in err
    assert sorted(p.name for p in (inventory / "tenants").iterdir()) == before


def test_port_range_full_is_refused_before_connecting(
    inventory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ports clash: a tenant file claiming another tenant's port on the same host."""
    clash = {**TAKEN, "slug": "clash", "domains": ["shop.clash.example"]}
    (inventory / "tenants" / "clash.yaml").write_text(yaml.safe_dump(clash))
    code = run(["--inventory", str(inventory), "tenant", "create", "clash"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert "port" in err
    assert len(err.splitlines()) == 1


def test_valid_input_does_try_to_connect(
    inventory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The control row: the same inventory with good input gets as far as the host."""
    code = run(_argv(inventory, GOOD))
    err = capsys.readouterr().err.strip()
    assert code == 5, err
    assert "error[host_unreachable]" in err
    assert not (inventory / "tenants" / "acme.yaml").exists()


def test_json_flag_after_the_subcommand_prints_one_envelope(
    inventory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run(["--inventory", str(inventory), "tenant", "create", "Bad", "--json"])
    captured = capsys.readouterr()
    assert code == 2
    (line,) = captured.out.splitlines()
    envelope = json.loads(line)
    assert envelope["status"] == "error"
    assert envelope["errors"][0]["field"] == "slug"
