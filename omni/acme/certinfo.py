"""Reading a certificate's facts (pure; no I/O).

Only public facts leave this module: names, dates, issuer, and whether a private key matches
the certificate. The private key's bytes are never stored or shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization

UNPARSEABLE = "unparseable"


@dataclass(frozen=True)
class CertState:
    """What a certificate on a host says about itself."""

    domains: tuple[str, ...]  # DNS SANs, sorted
    not_after: datetime  # timezone-aware, UTC
    issuer: str
    key_matches: bool  # the private key next to it belongs to this certificate
    # Whether the chain verifies against the configured trust bundle (None: not checked,
    # e.g. production trusting the system store). A test CA that was re-created, or a
    # staging certificate, shows up here as False and is re-issued.
    trusted: bool | None = None

    @property
    def parseable(self) -> bool:
        return self.issuer != UNPARSEABLE


def _public_der(key: object) -> bytes | None:
    public_bytes = getattr(key, "public_bytes", None)
    if public_bytes is None:
        return None
    der: bytes = public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return der


def chain_trusted(fullchain_pem: bytes, trust_pem: bytes, name: str) -> bool:
    """Whether the leaf in ``fullchain_pem`` verifies for ``name`` through its chain to a
    root in ``trust_pem`` (at the current time)."""
    from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

    try:
        chain = x509.load_pem_x509_certificates(fullchain_pem)
        store = Store(x509.load_pem_x509_certificates(trust_pem))
        verifier = PolicyBuilder().store(store).build_server_verifier(x509.DNSName(name))
        verifier.verify(chain[0], chain[1:])
    except (ValueError, VerificationError):
        return False
    return True


def cert_state(
    fullchain_pem: bytes, privkey_pem: bytes | None, trust_pem: bytes | None = None
) -> CertState:
    """Facts of the first (leaf) certificate in ``fullchain_pem``.

    A file that does not parse yields a state with no domains, an expiry at the epoch and
    issuer ``unparseable``, so planning replaces it.
    """
    try:
        cert = x509.load_pem_x509_certificate(fullchain_pem)
    except ValueError:
        return CertState((), datetime.fromtimestamp(0, UTC), UNPARSEABLE, False)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        domains = tuple(sorted(san.get_values_for_type(x509.DNSName)))
    except x509.ExtensionNotFound:
        domains = ()
    return CertState(
        domains=domains,
        not_after=cert.not_valid_after_utc,
        issuer=cert.issuer.rfc4514_string(),
        key_matches=_key_matches(cert, privkey_pem),
        trusted=(
            chain_trusted(fullchain_pem, trust_pem, domains[0]) if trust_pem and domains else None
        ),
    )


def _key_matches(cert: x509.Certificate, privkey_pem: bytes | None) -> bool:
    if privkey_pem is None:
        return False
    try:
        key = serialization.load_pem_private_key(privkey_pem, password=None)
    except (ValueError, TypeError):
        return False
    # Compare public halves; the exception text of a bad key is never surfaced.
    return _public_der(key.public_key()) == _public_der(cert.public_key())
