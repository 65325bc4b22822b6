"""``omni tenant create`` leaves a shop its owner can use (lab, real Medusa 2.21.2).

One tenant for the module, created with ``--admin-email``: the owner accepts the invite
and reads products through the tenant's own HTTPS domain, a storefront reads regions with
the recorded publishable key, an invite about to expire is re-issued, and the invite token
shows up only in ``omni tenant credentials``.
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from omni.inventory.models import Host
from omni.probe import tls_context
from omni.tenant.secrets import TenantSecrets
from omni.tenant.secrets_store import secrets_path
from tests import tenant_lab as tl

pytestmark = pytest.mark.lab

IMAGE = "omni-lab/medusa:v1"
PASSWORD = "owner-chosen-Passw0rd"  # chosen by the owner when accepting the invite


def _domain(slug: str, host: Host) -> str:
    return f"{slug}.{host.name}.lab.test"


def _email(slug: str) -> str:
    return f"owner@{slug}.lab.test"


def https(
    host: Host,
    domain: str,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    """One HTTPS request to ``domain`` through the host's nginx (SNI, certificate verified
    against the lab's CA); returns (status, JSON body or {})."""
    address = host.nginx.listen_address or host.address
    raw = socket.create_connection((address, host.nginx.https_port), timeout=30)
    tls = tls_context(host.health.ca_bundle).wrap_socket(raw, server_hostname=domain)
    conn = http.client.HTTPConnection(domain, host.nginx.https_port, timeout=30)
    conn.sock = tls
    payload = None if body is None else json.dumps(body).encode()
    sent = {"Host": domain, "Connection": "close", **(headers or {})}
    if payload is not None:
        sent["Content-Type"] = "application/json"
    try:
        conn.request(method, path, body=payload, headers=sent)
        response = conn.getresponse()
        text = response.read().decode("utf-8", "replace")
    finally:
        conn.close()
    try:
        data = json.loads(text) if text else {}
    except ValueError:
        data = {"raw": text}
    return response.status, data if isinstance(data, dict) else {"data": data}


@pytest.fixture(scope="module")
def inventory(tmp_path_factory: pytest.TempPathFactory, lab_hosts: Any) -> Iterator[Path]:
    path = tl.copy_lab_inventory(tmp_path_factory.mktemp("inventory"))
    yield path
    for tenant_file in sorted((path / "tenants").glob("*.yaml")):
        tl.omni(path, "tenant", "destroy", tenant_file.stem, "--yes")


@pytest.fixture(scope="module")
def created(inventory: Path, dev_host: Host) -> tuple[str, tl.Run]:
    """The module's tenant, created with an admin e-mail: (slug, the create run)."""
    slug = tl.unique_slug("shop")
    run = tl.omni(
        inventory,
        "--json",
        "tenant",
        "create",
        slug,
        "--host",
        dev_host.name,
        "--domain",
        _domain(slug, dev_host),
        "--image",
        IMAGE,
        "--admin-email",
        _email(slug),
    )
    assert run.code == 0, run.stderr
    return slug, run


@pytest.fixture(scope="module")
def slug(created: tuple[str, tl.Run]) -> str:
    return created[0]


def _credentials(inventory: Path, slug: str) -> dict[str, Any]:
    run = tl.omni(inventory, "--json", "tenant", "credentials", slug)
    assert run.code == 0, run.stderr
    data = run.envelope()["data"]
    assert isinstance(data, dict)
    return data


def _invite_token(inventory: Path, slug: str) -> str:
    url = _credentials(inventory, slug)["invite_url"]
    assert isinstance(url, str)
    return parse_qs(urlsplit(url).query)["token"][0]


def _create_again(inventory: Path, slug: str) -> dict[str, Any]:
    run = tl.omni(inventory, "--json", "tenant", "create", slug)
    assert run.code == 0, run.stderr
    return run.envelope()


def test_first_create_invites_the_admin_and_records_a_publishable_key(
    created: tuple[str, tl.Run], inventory: Path, dev_host: Host
) -> None:
    slug, run = created
    steps = {s["resource"]: s for s in run.envelope()["steps"]}
    assert steps["medusa.admin"]["verb"] == "create"
    assert steps["medusa.publishable_key"]["verb"] == "create"
    credentials = _credentials(inventory, slug)
    assert credentials["admin_email"] == _email(slug)
    assert credentials["admin_user_exists"] is False
    link = f"https://{_domain(slug, dev_host)}/app/invite?token="
    assert credentials["invite_url"].startswith(link)
    assert credentials["password"] is None


def test_second_create_is_all_noops(slug: str, inventory: Path) -> None:
    envelope = _create_again(inventory, slug)
    assert envelope["changed"] is False
    assert {step["verb"] for step in envelope["steps"]} == {"noop"}


def test_dry_run_with_an_admin_email_changes_nothing(
    slug: str, inventory: Path, dev_host: Host, session: Callable[[Host], Any]
) -> None:
    s = session(dev_host)
    other = tl.unique_slug("dry")
    run = tl.omni(
        inventory, "--json", "tenant", "create", other, "--host", dev_host.name,
        "--domain", _domain(other, dev_host), "--image", IMAGE,
        "--admin-email", _email(other), "--dry-run",
    )
    assert run.code == 0, run.stderr
    steps = {step["resource"]: step["verb"] for step in run.envelope()["steps"]}
    assert steps["medusa.admin"] == "create" and steps["medusa.publishable_key"] == "create"
    # Other lab tests change the host meanwhile: look for any trace of this tenant only.
    trace = json.dumps(tl.host_snapshot(s), default=str)
    assert other not in trace and "tenant_" + other.replace("-", "_") not in trace
    assert not (inventory / "tenants" / f"{other}.yaml").exists()


def test_an_invite_about_to_expire_is_reissued(
    slug: str, inventory: Path, dev_host: Host, session: Callable[[Host], Any]
) -> None:
    old = _invite_token(inventory, slug)
    with session(dev_host).postgres("tenant_" + slug.replace("-", "_")) as conn:
        conn.execute(
            "UPDATE invite SET expires_at = now() + interval '30 minutes' WHERE token = %s", (old,)
        )
    envelope = _create_again(inventory, slug)
    steps = {s["resource"]: s for s in envelope["steps"]}
    assert steps["medusa.admin"]["verb"] == "update"
    assert "re-issue" in steps["medusa.admin"]["summary"]
    assert envelope["changed"] is True
    new = _invite_token(inventory, slug)
    assert new != old
    assert {s["verb"] for s in _create_again(inventory, slug)["steps"]} == {"noop"}


def test_only_tenant_credentials_prints_the_invite(
    created: tuple[str, tl.Run],
    inventory: Path,
    dev_host: Host,
    session: Callable[[Host], Any],
) -> None:
    slug, first = created
    token = _invite_token(inventory, slug)
    human = tl.omni(inventory, "tenant", "credentials", slug)
    assert human.code == 0, human.stderr
    assert token in human.stdout.replace("\n", "")
    raw = session(dev_host).transport.read_file(secrets_path(dev_host, slug))
    assert raw is not None
    held = TenantSecrets.from_json(raw)
    assert held.admin_invite_token == token
    mode = session(dev_host).transport.run(
        ["stat", "-c", "%a", secrets_path(dev_host, slug)]
    ).text().strip()
    assert mode == "600"
    others = [
        first,
        tl.omni(inventory, "--json", "tenant", "create", slug),
        tl.omni(inventory, "-vv", "tenant", "create", slug),
        tl.omni(inventory, "--json", "tenant", "create", slug, "--dry-run"),
        tl.omni(inventory, "tenant", "show", slug),
        tl.omni(inventory, "--json", "tenant", "show", slug),
        tl.omni(inventory, "--json", "tenant", "list"),
    ]
    for run in others:
        assert run.code == 0, run.stderr
        for value in held.values():
            assert value not in run.stdout + run.stderr, run.args


def test_storefront_reads_regions_with_the_publishable_key(
    slug: str, inventory: Path, dev_host: Host
) -> None:
    run = tl.omni(inventory, "--json", "tenant", "show", slug)
    assert run.code == 0, run.stderr
    key = run.envelope()["data"]["tenant"]["publishable_key"]
    assert isinstance(key, str) and key.startswith("pk_")
    human = tl.omni(inventory, "tenant", "show", slug)
    assert key in human.stdout
    domain = _domain(slug, dev_host)
    status, body = https(dev_host, domain, "GET", "/store/regions", headers={
        "x-publishable-api-key": key
    })
    assert status == 200, body
    assert "regions" in body
    assert https(dev_host, domain, "GET", "/store/regions")[0] == 400


def test_owner_accepts_the_invite_signs_in_and_reads_products(
    slug: str, inventory: Path, dev_host: Host
) -> None:
    domain = _domain(slug, dev_host)
    email = _email(slug)
    invite = _invite_token(inventory, slug)
    status, body = https(dev_host, domain, "POST", "/auth/user/emailpass/register", {
        "email": email, "password": PASSWORD
    })
    assert status == 200, body
    registration = body["token"]
    status, body = https(
        dev_host, domain, "POST", f"/admin/invites/accept?token={invite}", {},
        headers={"authorization": f"Bearer {registration}"},
    )
    assert status == 200, body
    assert body["user"]["email"] == email
    status, body = https(dev_host, domain, "POST", "/auth/user/emailpass", {
        "email": email, "password": PASSWORD
    })
    assert status == 200, body
    token = body["token"]
    status, body = https(
        dev_host, domain, "GET", "/admin/products", headers={"authorization": f"Bearer {token}"}
    )
    assert status == 200, body
    wrong = https(dev_host, domain, "POST", "/auth/user/emailpass", {
        "email": email, "password": "not-the-password"
    })
    assert wrong[0] == 401
    # Accepted: nothing left to do, and credentials says the user exists.
    envelope = _create_again(inventory, slug)
    assert {s["verb"] for s in envelope["steps"]} == {"noop"}
    admin = next(s for s in envelope["steps"] if s["resource"] == "medusa.admin")
    assert "exists" in admin["summary"]
    assert _credentials(inventory, slug)["admin_user_exists"] is True
