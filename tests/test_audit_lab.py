"""The audit log on the lab: a real ``tenant create`` leaves one entry on its host, and
``omni history`` reads it back (the entry names who, with which arguments, and how it
ended); the file is 0600 and never holds a tenant's secret. A host that cannot be read is a
warning, unless none can."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from omni.audit import audit_path
from omni.inventory.models import Host
from omni.tenant.secrets import TenantSecrets
from omni.tenant.secrets_store import secrets_path
from tests import tenant_lab as tl

pytestmark = pytest.mark.lab

IMAGE = "omni-lab/medusa:v1"


@pytest.fixture(scope="module")
def inventory(tmp_path_factory: pytest.TempPathFactory, lab_hosts: Any) -> Iterator[Path]:
    path = tl.copy_lab_inventory(tmp_path_factory.mktemp("inventory"))
    yield path
    for tenant_file in sorted((path / "tenants").glob("*.yaml")):
        tl.omni(path, "tenant", "destroy", tenant_file.stem, "--yes")


@pytest.fixture(scope="module")
def actor() -> str:
    return f"audit-test-{secrets.token_hex(4)}"


@pytest.fixture(scope="module")
def created(inventory: Path, dev_host: Host, actor: str) -> dict[str, Any]:
    """A tenant created through the CLI as ``actor``; its create envelope."""
    slug = tl.unique_slug("audit")
    run = tl.omni(
        inventory, "--json", "tenant", "create", slug, "--host", dev_host.name,
        "--domain", f"{slug}.{dev_host.name}.lab.test", "--image", IMAGE,
        env={"OMNI_ACTOR": actor},
    )
    assert run.code == 0, run.stderr
    return run.envelope()


def _history(inventory: Path, *args: str) -> tl.Run:
    return tl.omni(inventory, "--json", "history", *args, timeout=120)


def test_history_shows_the_create_with_who_argv_and_result(
    created: dict[str, Any], inventory: Path, dev_host: Host, actor: str
) -> None:
    slug = created["data"]["tenant"]
    run = _history(inventory, slug)
    assert run.code == 0, run.stderr
    envelope = run.envelope()
    assert envelope["command"] == "history" and envelope["status"] == "success"
    entries = [e for e in envelope["data"]["entries"] if e["who"] == actor]
    assert len(entries) == 1, envelope["data"]["entries"]
    (entry,) = entries
    assert entry["command"] == "tenant create"
    assert entry["host"] == dev_host.name
    assert entry["tenants"] == [slug]
    argv = entry["argv"]  # the whole command line after `omni`, global options too
    at = argv.index("tenant")
    assert argv[at : at + 3] == ["tenant", "create", slug]
    assert "--inventory" in argv[:at]
    assert "--domain" in entry["argv"] and IMAGE in entry["argv"]
    assert (entry["result"], entry["exit_code"]) == ("success", 0)
    assert entry["plan_fingerprint"] == created["data"]["plan_fingerprint"]
    assert entry["seconds"] > 0
    assert entry["when"].endswith("Z")
    assert all(slug in e["tenants"] for e in envelope["data"]["entries"])


def test_the_audit_file_is_private_and_holds_no_tenant_secret(
    created: dict[str, Any], dev_host: Host, session: Callable[[Host], Any]
) -> None:
    slug = created["data"]["tenant"]
    transport = session(dev_host).transport
    found = transport.stat(audit_path(dev_host.state_dir))
    assert found is not None and found.mode == 0o600
    raw_secrets = transport.read_file(secrets_path(dev_host, slug))
    assert raw_secrets is not None
    values = TenantSecrets.from_json(raw_secrets).values()
    assert values
    log = transport.read_file(audit_path(dev_host.state_dir))
    assert log is not None and slug.encode() in log
    for value in values:
        assert value.encode() not in log
    for line in log.splitlines():  # every line is one JSON object
        assert isinstance(json.loads(line), dict)


def test_history_human_table_and_limit(created: dict[str, Any], inventory: Path) -> None:
    slug = created["data"]["tenant"]
    run = tl.omni(inventory, "history", slug, "--host", "dev", "--limit", "5", timeout=120)
    assert run.code == 0, run.stderr
    assert "tenant create" in run.stdout and slug in run.stdout
    limited = _history(inventory, "--limit", "1")
    assert limited.code == 0, limited.stderr
    assert len(limited.envelope()["data"]["entries"]) == 1


@pytest.mark.parametrize(
    ("args", "option"),
    [(("--limit", "0"), "--limit"), (("Bad_Slug",), "SLUG"), (("--host", "nowhere"), "host")],
)
def test_history_bad_input_is_one_line_exit_2(
    inventory: Path, args: tuple[str, ...], option: str
) -> None:
    run = tl.omni(inventory, "history", *args, timeout=60)
    assert run.code == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error[invalid_input]") and option in lines[0]


def _broken_copy(inventory: Path, target: Path, hosts: list[str]) -> Path:
    """A copy of ``inventory`` whose ``hosts`` point at a closed port (unreachable)."""
    tl.copy_lab_inventory(target)
    raw = yaml.safe_load((inventory / "hosts.yaml").read_text())
    for name in hosts:
        raw["hosts"][name]["port"] = 1  # nothing listens on tcpmux
    (target / "hosts.yaml").write_text(yaml.safe_dump(raw))
    return target


def test_an_unreadable_host_is_a_warning_and_none_readable_is_exit_5(
    created: dict[str, Any], inventory: Path, tmp_path: Path, actor: str
) -> None:
    slug = created["data"]["tenant"]
    half = _broken_copy(inventory, tmp_path / "half", ["netcup"])
    run = _history(half, slug)
    assert run.code == 0, run.stderr
    assert "warning: host netcup" in run.stderr
    data = run.envelope()["data"]
    assert data["hosts"] == {"dev": "read", "netcup": "unreadable"}
    assert any(e["who"] == actor for e in data["entries"])

    none = _broken_copy(inventory, tmp_path / "none", ["dev", "netcup"])
    run = _history(none)
    assert run.code == 5
    assert run.envelope()["errors"][0]["code"] == "host_unreachable"
