"""Certificate and vhost on the lab's dev host: real sshd, real nginx, real Pebble.

One certificate is issued per module (``certtest-<random>.dev.lab.test``); every test cleans
up what it creates (vhost, certificate directory) and leaves nginx reloaded.
"""

from __future__ import annotations

import secrets
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from omni import probe
from omni.acme import store
from omni.engine.step import Verb
from omni.errors import StepFailed
from omni.hosts.session import HostSession
from omni.inventory.models import Host
from omni.nginx import InstallOptions, install_config
from omni.render import LIVE_CHECK_PATH
from omni.resources.certificate import CertificateResource
from omni.resources.vhost import VhostResource
from omni.tenant.spec import TenantSpec
from tests.factories import make_secrets, make_tenant
from tests.lab import wait_until, with_changes

pytestmark = pytest.mark.lab

FAST = InstallOptions(live_deadline_seconds=5.0, poll_interval_seconds=0.1)


def _spec(host: Host, slug: str, now: datetime | None = None) -> TenantSpec:
    return TenantSpec(
        tenant=make_tenant(slug=slug, host=host.name, domains=[f"{slug}.{host.name}.lab.test"]),
        host=host,
        secrets=make_secrets(),
        app_port=host.app_ports.end,  # no app needed: the live check has its own location
        redis_port=host.redis_ports.end,
        now=now or datetime.now(UTC),
    )


def _mode(session: HostSession, path: str) -> str:
    return session.transport.run(["stat", "-c", "%a", path]).text().strip()


def _served_serial(spec: TenantSpec) -> int:
    """Serial of the certificate nginx serves for the primary domain (chain verified)."""
    host = spec.host
    context = probe.tls_context(host.health.ca_bundle)
    address = host.nginx.listen_address or host.address
    with socket.create_connection((address, host.nginx.https_port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname=spec.primary_domain) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


@dataclass
class Issued:
    session: HostSession
    spec: TenantSpec
    cert: CertificateResource
    vhost: VhostResource


def _cleanup(session: HostSession, spec: TenantSpec) -> None:
    transport = session.transport
    transport.remove_file(spec.vhost_path)
    transport.run(["rm", "-rf", "--", spec.cert_dir])
    nginx = spec.host.nginx
    if transport.run(nginx.test_command, check=False).ok:
        transport.run(nginx.reload_command, check=False)


@pytest.fixture(scope="module")
def issued(dev_host: Host) -> Iterator[Issued]:
    session = HostSession(dev_host, connect_timeout=10)
    spec = _spec(dev_host, f"certtest-{secrets.token_hex(4)}")
    try:
        cert = CertificateResource(spec)
        (step,) = cert.plan(cert.observe(session))
        assert step.verb is Verb.CREATE
        cert.apply(session, step)
        vhost = VhostResource(spec, options=FAST)
        (vstep,) = vhost.plan(vhost.observe(session))
        assert vstep.verb is Verb.CREATE
        vhost.apply(session, vstep)
        yield Issued(session, spec, cert, vhost)
    finally:
        _cleanup(session, spec)
        session.close()


def test_issued_certificate_is_served_with_sni_and_verifies_against_pebble_root(
    issued: Issued,
) -> None:
    spec, host = issued.spec, issued.spec.host
    address = host.nginx.listen_address or host.address
    status, body, sans = probe.https_get(address, host.nginx.https_port, spec.primary_domain,
                                         LIVE_CHECK_PATH, host.health.ca_bundle, 5)
    assert status == 200
    assert body.strip().decode() == issued.vhost.digest
    assert sans == (spec.primary_domain,)
    # The same handshake without Pebble's root must fail: verification is real.
    with pytest.raises(probe.ProbeError, match="certificate verify failed"):
        probe.https_get(address, host.nginx.https_port, spec.primary_domain, LIVE_CHECK_PATH,
                        None, 5)
    # HTTP redirects to HTTPS, except the challenge path.
    status, _ = probe.http_get(address, host.nginx.http_port, spec.primary_domain, "/a", 5)
    assert status == 301


def test_second_plan_is_noop_for_certificate_and_vhost(issued: Issued) -> None:
    (cert_step,) = issued.cert.plan(issued.cert.observe(issued.session))
    (vhost_step,) = issued.vhost.plan(issued.vhost.observe(issued.session))
    assert cert_step.verb is Verb.NOOP, cert_step.summary
    assert "valid until" in cert_step.summary
    assert vhost_step.verb is Verb.NOOP


def test_key_files_have_private_modes(issued: Issued) -> None:
    spec, session = issued.spec, issued.session
    assert _mode(session, spec.privkey_path) == "600"
    assert _mode(session, spec.fullchain_path) == "644"
    assert _mode(session, spec.host.acme.account_key_file) == "600"
    live = store.live_version(session.transport, spec.cert_dir)
    assert live is not None
    assert _mode(session, f"{spec.cert_dir}/{live}") == "700"
    kind = session.transport.run(["stat", "-c", "%F", f"{spec.cert_dir}/live"]).text()
    assert kind.strip() == "symbolic link"


def _orphan_version(session: HostSession, spec: TenantSpec) -> str:
    """What a run killed after writing a new version but before the swap leaves behind,
    made worse on purpose: a key that does not match the chain next to it."""
    transport = session.transport
    name = store.version_name(datetime.now(UTC))
    transport.run(["mkdir", "-m", "700", "--", f"{spec.cert_dir}/{name}"])
    stray = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    transport.write_file(f"{spec.cert_dir}/{name}/privkey.pem", stray, mode=0o600)
    chain = transport.read_file(spec.fullchain_path)
    assert chain is not None
    transport.write_file(f"{spec.cert_dir}/{name}/fullchain.pem", chain, mode=0o644)
    return name


def test_run_killed_before_swap_leaves_nginx_and_plan_untouched(issued: Issued) -> None:
    session, spec = issued.session, issued.spec
    live_before = store.live_version(session.transport, spec.cert_dir)
    served_before = _served_serial(spec)
    orphan = _orphan_version(session, spec)
    assert orphan in store.versions(session.transport, spec.cert_dir)
    (step,) = issued.cert.plan(issued.cert.observe(session))
    assert step.verb is Verb.NOOP, step.summary
    assert store.live_version(session.transport, spec.cert_dir) == live_before
    nginx = spec.host.nginx
    tested = session.transport.run(nginx.test_command, check=False)
    assert tested.ok, tested.stderr
    # A reload (what any other tenant's change would do) keeps serving the same pair.
    session.transport.run(nginx.reload_command)
    wait_until(lambda: _served_serial(spec) == served_before, timeout=15,
               what="nginx serving the live certificate after a reload")
    assert issued.vhost.check_live() is None


def test_vhost_failing_nginx_t_is_reverted_and_earlier_vhost_keeps_serving(
    issued: Issued,
) -> None:
    vhost, session = issued.vhost, issued.session
    before = session.transport.read_file(vhost.path)
    broken = vhost.content.replace("ssl_session_tickets off;", "ssl_session_tickets maybe;")
    with pytest.raises(StepFailed, match=r"config test failed.*\[emerg\]"):
        install_config(session.transport, issued.spec.host.nginx, vhost.path, broken.encode(),
                       vhost.check_live, FAST)
    assert session.transport.read_file(vhost.path) == before
    assert vhost.check_live() is None


def test_vhost_passing_nginx_t_but_not_live_is_detected_and_reverted(issued: Issued) -> None:
    vhost, session, spec = issued.vhost, issued.session, issued.spec
    before = session.transport.read_file(vhost.path)
    address = spec.host.nginx.listen_address or spec.host.address
    with socket.socket() as holder:
        holder.bind((address, 0))
        holder.listen(1)
        held = holder.getsockname()[1]
        moved = with_changes(spec.host, nginx={**spec.host.nginx.model_dump(), "https_port": held})
        bad = VhostResource(_spec(moved, spec.slug), options=FAST)
        with pytest.raises(StepFailed, match="passed the test and reloaded but is not serving"):
            bad.apply(session, bad.plan(bad.observe(session))[0])
    assert session.transport.read_file(vhost.path) == before
    wait_until(lambda: vhost.check_live() is None, timeout=15, what="earlier vhost serving")


def test_renewal_window_reissues_with_same_account_and_nginx_serves_new_cert(
    issued: Issued,
) -> None:
    session, spec = issued.session, issued.spec
    account_before = session.transport.read_file(spec.host.acme.account_key_file)
    served_before = _served_serial(spec)
    # Pebble's certificates here last 90 days; 80 days on, the 30-day window is open.
    later = _spec(spec.host, spec.slug, now=datetime.now(UTC) + timedelta(days=80))
    cert = CertificateResource(later)
    (step,) = cert.plan(cert.observe(session))
    assert step.verb is Verb.REPLACE
    assert [c.field for c in step.changes] == ["expires"]
    live_before = store.live_version(session.transport, spec.cert_dir)
    orphan = _orphan_version(session, spec)  # pruned by the swap below
    cert.apply(session, step)
    live_after = store.live_version(session.transport, spec.cert_dir)
    assert live_before is not None and live_after is not None
    assert live_after not in (live_before, orphan)
    assert store.versions(session.transport, spec.cert_dir) == sorted([live_before, live_after])
    assert session.transport.read_file(spec.host.acme.account_key_file) == account_before
    wait_until(lambda: _served_serial(spec) != served_before, timeout=15,
               what="nginx serving the renewed certificate")
    (again,) = issued.cert.plan(issued.cert.observe(session))
    assert again.verb is Verb.NOOP


def test_preflight_failure_names_domain_and_places_no_order(dev_host: Host) -> None:
    session = HostSession(dev_host, connect_timeout=10)
    slug = f"certtest-{secrets.token_hex(4)}"
    unserved = f"{dev_host.state_dir}/{slug}-webroot"  # a directory nginx does not serve
    account = f"{dev_host.state_dir}/{slug}-account.json"
    host = with_changes(dev_host, acme={**dev_host.acme.model_dump(), "webroot": unserved,
                                        "account_key_file": account})
    spec = _spec(host, slug)
    try:
        cert = CertificateResource(spec)
        (step,) = cert.plan(cert.observe(session))
        with pytest.raises(StepFailed, match=rf"pre-flight failed for {spec.primary_domain}.*404"):
            cert.apply(session, step)
        assert session.transport.read_file(account) is None  # never reached the CA
        listing = session.transport.run(["find", unserved, "-type", "f"]).text()
        assert listing == ""  # the probe file was removed
    finally:
        session.transport.run(["rm", "-rf", "--", unserved])
        session.close()
