"""Planning the tenant certificate from what the current one says (pure; no server, no CA)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from omni.acme.certinfo import CertState, cert_state
from omni.engine.step import Step, Verb
from omni.resources.certificate import CertificateResource, plan_certificate
from tests.factories import make_spec

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
