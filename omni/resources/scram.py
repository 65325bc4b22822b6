"""SCRAM-SHA-256 verifiers (RFC 5802/7677) as PostgreSQL stores them.

omni sends role passwords already hashed, so the clear password never travels to the
server, and checks an existing role's password without logging in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

_ITERATIONS = 4096  # PostgreSQL's default scram_iterations


def scram_verifier(
    password: str, *, salt: bytes | None = None, iterations: int = _ITERATIONS
) -> str:
    salt = os.urandom(16) if salt is None else salt
    stored_key, server_key = _keys(password, salt, iterations)
    b64 = base64.b64encode
    return (
        f"SCRAM-SHA-256${iterations}:{b64(salt).decode()}"
        f"${b64(stored_key).decode()}:{b64(server_key).decode()}"
    )


def verifier_matches(verifier: str | None, password: str) -> bool:
    """True when ``verifier`` (pg_authid.rolpassword) was made from ``password``."""
    if not verifier or not verifier.startswith("SCRAM-SHA-256$"):
        return False
    try:
        _, params, keys = verifier.split("$")
        iterations_text, salt_b64 = params.split(":")
        stored_b64, server_b64 = keys.split(":")
        salt = base64.b64decode(salt_b64)
        stored_key, server_key = _keys(password, salt, int(iterations_text))
    except ValueError:
        return False
    return hmac.compare_digest(stored_key, base64.b64decode(stored_b64)) and hmac.compare_digest(
        server_key, base64.b64decode(server_b64)
    )


def _keys(password: str, salt: bytes, iterations: int) -> tuple[bytes, bytes]:
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    return stored_key, server_key
