"""Planning the tenant certificate from what the current one says (pure; no server, no CA)."""

from __future__ import annotations

import os
import stat
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from omni.acme import store
from omni.acme.certinfo import CertState, cert_state
from omni.acme.client import Issued
from omni.engine.step import Step, Verb
from omni.errors import StepFailed
from omni.hosts.session import HostSession
from omni.resources.certificate import CertificateResource, plan_certificate
from omni.tenant.spec import TenantSpec
from omni.transport.local import LocalTransport
from tests.factories import make_host, make_spec

NOW = datetime(2026, 11, 25, tzinfo=UTC)
DOMAINS = ["shop.acme.example", "www.acme.example"]


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_cert(domains: list[str], not_after: datetime,
              key: ec.EllipticCurvePrivateKey) -> bytes:
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_after - timedelta(days=90))
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(d) for d in domains]),
                       critical=False)
        .sign(_key(), hashes.SHA256())  # issuer key: any key; the plan never verifies chains
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def _state(domains: list[str], days_left: float, *, key_ok: bool = True) -> CertState:
    key = _key()
    cert = make_cert(domains, NOW + timedelta(days=days_left), key)
    return cert_state(cert, _pem(key) if key_ok else _pem(_key()))


def _plan(current: CertState | None, renew_before_days: int = 30) -> list[Step]:
    return plan_certificate(current, DOMAINS, NOW, renew_before_days, "https://acme.example/dir")


def test_absent_certificate_is_created() -> None:
    (step,) = _plan(None)
    assert step.verb is Verb.CREATE
    assert {c.field: (c.before, c.after) for c in step.changes}["domains"] == (
        None, "shop.acme.example, www.acme.example")


def test_valid_certificate_outside_window_is_noop_naming_expiry() -> None:
    (step,) = _plan(_state(DOMAINS, days_left=60))
    assert step.verb is Verb.NOOP
    assert "valid until 2027-01-24" in step.summary


def test_san_order_does_not_matter() -> None:
    (step,) = _plan(_state(list(reversed(DOMAINS)), days_left=60))
    assert step.verb is Verb.NOOP


@pytest.mark.parametrize(
    ("days_left", "renew_before", "verb"),
    [
        (31, 30, Verb.NOOP),
        (29, 30, Verb.REPLACE),
        (0.5, 30, Verb.REPLACE),
        (-3, 30, Verb.REPLACE),  # expired
        (29, 7, Verb.NOOP),
        (6, 7, Verb.REPLACE),
    ],
)
def test_renewal_window_table(days_left: float, renew_before: int, verb: Verb) -> None:
    (step,) = _plan(_state(DOMAINS, days_left=days_left), renew_before_days=renew_before)
    assert step.verb is verb
    if verb is Verb.REPLACE:
        fields = {c.field: (c.before, c.after) for c in step.changes}
        assert fields["expires"][1] == "renewed"
        assert set(fields) == {"expires"}


def test_changed_names_replace_with_before_and_after() -> None:
    (step,) = _plan(_state(["shop.acme.example"], days_left=60))
    assert step.verb is Verb.REPLACE
    (change,) = step.changes
    assert (change.field, change.before, change.after) == (
        "domains", "shop.acme.example", "shop.acme.example, www.acme.example")


def test_names_changed_and_in_window_lists_both() -> None:
    (step,) = _plan(_state(["old.acme.example"], days_left=2))
    assert {c.field for c in step.changes} == {"domains", "expires"}


def test_private_key_not_matching_replaces() -> None:
    (step,) = _plan(_state(DOMAINS, days_left=60, key_ok=False))
    assert step.verb is Verb.REPLACE
    assert [c.field for c in step.changes] == ["private key"]


def test_unparseable_file_replaces() -> None:
    (step,) = _plan(cert_state(b"not a certificate", None))
    assert step.verb is Verb.REPLACE


def test_cert_state_reads_sans_expiry_issuer_without_exposing_key() -> None:
    key = _key()
    not_after = datetime(2027, 1, 1, 12, 0, tzinfo=UTC)
    state = cert_state(make_cert(["b.example", "a.example"], not_after, key), _pem(key))
    assert state.domains == ("a.example", "b.example")
    assert state.not_after == not_after
    assert state.issuer == "CN=Test CA"
    assert state.key_matches
    assert "PRIVATE" not in repr(state)


def test_resource_plan_uses_spec_clock_and_host_window() -> None:
    spec = make_spec(domains=DOMAINS)  # spec.now is 2026-11-25, default window 30 days
    resource = CertificateResource(spec)
    assert spec.now == NOW
    (inside,) = resource.plan(_state(DOMAINS, days_left=10))
    (outside,) = resource.plan(_state(DOMAINS, days_left=45))
    assert (inside.verb, outside.verb) == (Verb.REPLACE, Verb.NOOP)


def test_chain_not_trusted_by_the_bundle_replaces() -> None:
    """A certificate from a CA the host no longer trusts (e.g. a re-created test CA)."""
    key = _key()
    cert = make_cert(DOMAINS, datetime.now(UTC) + timedelta(days=60), key)
    other_root = make_cert(["root.example"], datetime.now(UTC) + timedelta(days=60), _key())
    state = cert_state(cert, _pem(key), trust_pem=other_root)
    assert state.trusted is False
    (step,) = _plan(state)
    assert step.verb is Verb.REPLACE
    assert "not trusted" in step.summary


def test_trust_is_not_checked_without_a_bundle() -> None:
    key = _key()
    state = cert_state(make_cert(DOMAINS, NOW + timedelta(days=60), key), _pem(key))
    assert state.trusted is None
    assert _plan(state)[0].verb is Verb.NOOP


# -- versioned certificate directories (omni.acme.store), on the local filesystem ---------


def _pair(domains: list[str] = DOMAINS) -> tuple[bytes, bytes]:
    key = _key()
    return _pem(key), make_cert(domains, NOW + timedelta(days=60), key)


def _local_spec(tmp_path: Path, *, test_command: list[str] | None = None) -> TenantSpec:
    nginx: dict[str, Any] = {"certs_dir": str(tmp_path / "certs"),
                             "sites_dir": str(tmp_path / "sites")}
    if test_command is not None:
        nginx.update(test_command=test_command, reload_command=["true"])
    (tmp_path / "sites").mkdir(exist_ok=True)
    spec = make_spec(domains=DOMAINS)
    return replace(spec, host=make_host(transport="local", nginx=nginx))


def _mode(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_version_names_sort_by_time_and_match_the_pattern() -> None:
    early = store.version_name(NOW, "0000ffff")
    later = store.version_name(NOW + timedelta(seconds=1))
    assert early == "v20261125T000000Z-0000ffff"
    assert store.VERSION.fullmatch(later)
    assert sorted([later, early]) == [early, later]


def test_spec_paths_go_through_live(tmp_path: Path) -> None:
    spec = _local_spec(tmp_path)
    assert spec.fullchain_path == f"{spec.cert_dir}/live/fullchain.pem"
    assert spec.privkey_path == f"{spec.cert_dir}/live/privkey.pem"


def test_version_is_written_private_and_not_live_until_swapped(tmp_path: Path) -> None:
    transport, cert_dir = LocalTransport(), str(tmp_path / "certs" / "t")
    key, chain = _pair()
    name = store.write_version(transport, cert_dir, key, chain)
    assert store.VERSION.fullmatch(name)
    assert _mode(f"{cert_dir}/{name}") == 0o700
    assert _mode(f"{cert_dir}/{name}/privkey.pem") == 0o600
    assert _mode(f"{cert_dir}/{name}/fullchain.pem") == 0o644
    assert store.live_version(transport, cert_dir) is None
    assert not os.path.lexists(f"{cert_dir}/live")
    store.point_live(transport, cert_dir, name)
    assert os.readlink(f"{cert_dir}/live") == name  # relative target
    assert Path(f"{cert_dir}/live/privkey.pem").read_bytes() == key
    assert store.live_version(transport, cert_dir) == name


def test_swap_replaces_the_link_itself_and_leaves_no_temp_link(tmp_path: Path) -> None:
    transport, cert_dir = LocalTransport(), str(tmp_path / "t")
    first = store.write_version(transport, cert_dir, *_pair())
    second = store.write_version(transport, cert_dir, *_pair())
    store.point_live(transport, cert_dir, first)
    store.point_live(transport, cert_dir, second)
    assert os.readlink(f"{cert_dir}/live") == second
    # Without mv -T the new link would have landed inside the old version's directory.
    assert sorted(os.listdir(f"{cert_dir}/{first}")) == ["fullchain.pem", "privkey.pem"]
    assert sorted(os.listdir(cert_dir)) == sorted([first, second, "live"])


def test_live_pointing_somewhere_foreign_reads_as_no_version(tmp_path: Path) -> None:
    cert_dir = tmp_path / "t"
    cert_dir.mkdir()
    (cert_dir / "live").symlink_to("/etc")
    assert store.live_version(LocalTransport(), str(cert_dir)) is None
    with pytest.raises(ValueError, match="not a certificate version"):
        store.point_live(LocalTransport(), str(cert_dir), "../../etc")


def test_prune_keeps_live_and_previous_and_legacy_files_only_while_in_use(
    tmp_path: Path,
) -> None:
    transport, cert_dir = LocalTransport(), str(tmp_path / "t")
    names = [store.write_version(transport, cert_dir, *_pair()) for _ in range(4)]
    Path(cert_dir, "fullchain.pem").write_bytes(b"legacy")
    Path(cert_dir, ".live.tmp-deadbeef").symlink_to(names[0])
    removed = store.prune(transport, cert_dir, keep=(names[3], names[1]), legacy_in_use=True)
    assert sorted(removed) == sorted([names[0], names[2]])
    assert store.versions(transport, cert_dir) == sorted([names[1], names[3]])
    assert os.path.exists(f"{cert_dir}/fullchain.pem")
    assert not os.path.lexists(f"{cert_dir}/.live.tmp-deadbeef")
    store.prune(transport, cert_dir, keep=(names[3], None), legacy_in_use=False)
    assert store.versions(transport, cert_dir) == [names[3]]
    assert not os.path.exists(f"{cert_dir}/fullchain.pem")


def test_reissue_points_live_at_new_version_and_keeps_two(tmp_path: Path) -> None:
    spec = _local_spec(tmp_path)  # no vhost yet: nginx is not involved
    resource = CertificateResource(spec)
    session = HostSession(spec.host)
    transport = session.transport
    made: list[str] = []
    for _ in range(3):
        key, chain = _pair()
        assert resource._install_locked(session, Issued(key, chain)) is False
        live = store.live_version(transport, spec.cert_dir)
        assert live is not None
        made.append(live)
        assert Path(spec.privkey_path).read_bytes() == key
        assert Path(spec.fullchain_path).read_bytes() == chain
    assert len(set(made)) == 3
    assert store.versions(transport, spec.cert_dir) == sorted(made[1:])
    state = resource.observe(session)
    assert state is not None and state.key_matches
    assert resource.plan(state)[0].verb is Verb.NOOP


def test_failing_config_test_swaps_live_back_to_previous(tmp_path: Path) -> None:
    """The revert path (a stand-in test command that fails; real nginx: the lab tests)."""
    spec = _local_spec(tmp_path, test_command=["false"])
    Path(spec.vhost_path).write_text(f"ssl_certificate {spec.fullchain_path};\n")
    resource = CertificateResource(spec)
    session = HostSession(spec.host)
    store.point_live(session.transport, spec.cert_dir,
                     store.write_version(session.transport, spec.cert_dir, *_pair()))
    before = store.live_version(session.transport, spec.cert_dir)
    with pytest.raises(StepFailed, match=r"config test failed.*previous certificate restored"):
        resource._install_locked(session, Issued(*_pair()))
    assert store.live_version(session.transport, spec.cert_dir) == before
