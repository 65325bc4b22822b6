"""HTTP and HTTPS probes that connect to an address and speak for a name.

Both connect to ``address:port`` directly (no resolver involved) and send ``Host: name``;
``https_get`` also sends the name as SNI and verifies the served certificate for that name
against ``ca_bundle`` (or the system store). Bodies are capped at :data:`MAX_BODY` bytes.
Any network, TLS or protocol failure raises :class:`ProbeError` with a one-line reason.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from collections.abc import Mapping
from typing import NamedTuple

MAX_BODY = 1 << 20


class ProbeError(Exception):
    """The probe could not get an HTTP answer (connect, TLS, verification, protocol)."""


class HttpsAnswer(NamedTuple):
    status: int
    body: bytes
    peer_sans: tuple[str, ...]  # DNS names in the served (verified) certificate


def _request(conn: http.client.HTTPConnection, host_header: str, path: str) -> tuple[int, bytes]:
    conn.request("GET", path, headers={"Host": host_header, "User-Agent": "omni-probe",
                                       "Connection": "close"})
    response = conn.getresponse()
    return response.status, response.read(MAX_BODY)


def http_get(
    address: str, port: int, host_header: str, path: str, timeout: float = 10.0
) -> tuple[int, bytes]:
    """``GET http://<host_header><path>`` sent to ``address:port``. Returns (status, body)."""
    conn = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        return _request(conn, host_header, path)
    except (OSError, http.client.HTTPException) as exc:
        raise ProbeError(f"http://{address}:{port}{path} (Host: {host_header}): "
                         f"{_reason(exc)}") from None
    finally:
        conn.close()


def tls_context(ca_bundle: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_bundle)
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def https_get(
    address: str,
    port: int,
    server_name: str,
    path: str,
    ca_bundle: str | None = None,
    timeout: float = 10.0,
) -> HttpsAnswer:
    """``GET https://<server_name><path>`` sent to ``address:port`` with SNI ``server_name``.

    The handshake fails (``ProbeError``) unless the served chain verifies against
    ``ca_bundle`` (None: the system store) and the certificate covers ``server_name``.
    Returns ``HttpsAnswer(status, body, peer_sans)`` (a 3-tuple).
    """
    context = tls_context(ca_bundle)
    where = f"https://{server_name}{path} via {address}:{port}"
    try:
        raw = socket.create_connection((address, port), timeout=timeout)
    except OSError as exc:
        raise ProbeError(f"{where}: {_reason(exc)}") from None
    try:
        tls = context.wrap_socket(raw, server_hostname=server_name)
    except (OSError, ssl.SSLError) as exc:
        raw.close()
        raise ProbeError(f"{where}: TLS handshake failed: {_reason(exc)}") from None
    conn = http.client.HTTPConnection(server_name, port, timeout=timeout)
    conn.sock = tls  # already connected and verified; http.client only speaks HTTP on it
    try:
        sans = _dns_sans(tls.getpeercert())
        status, body = _request(conn, server_name, path)
    except (OSError, http.client.HTTPException) as exc:
        raise ProbeError(f"{where}: {_reason(exc)}") from None
    finally:
        conn.close()
    return HttpsAnswer(status, body, sans)


def served_certificate(
    address: str, port: int, server_name: str, ca_bundle: str | None = None,
    timeout: float = 10.0,
) -> bytes:
    """DER of the leaf certificate served at ``address:port`` for SNI ``server_name``.

    The chain is verified like :func:`https_get`; raises ``ProbeError`` when it does not.
    """
    context = tls_context(ca_bundle)
    where = f"TLS {server_name} via {address}:{port}"
    try:
        with socket.create_connection((address, port), timeout=timeout) as raw, \
                context.wrap_socket(raw, server_hostname=server_name) as tls:
            der = tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError) as exc:
        raise ProbeError(f"{where}: {_reason(exc)}") from None
    if der is None:
        raise ProbeError(f"{where}: no certificate served")
    return der


def _dns_sans(cert: Mapping[str, object] | None) -> tuple[str, ...]:
    if not cert:
        return ()
    entries = cert.get("subjectAltName", ())
    if not isinstance(entries, tuple):
        return ()
    return tuple(str(value) for kind, value in entries if kind == "DNS")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {exc.verify_message}"
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0] if text else type(exc).__name__
