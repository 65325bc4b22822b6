"""Shared helpers for tests that run against the lab's real servers.

The lab inventory is ``$OMNI_LAB_INVENTORY/hosts.yaml`` (default ``<repo>/.lab/inventory``),
written by ``lab/lab.sh up``. Relative ``identity`` paths are resolved against that folder.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import yaml

from omni.inventory.models import Host, HostsFile

REPO = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def inventory_dir() -> Path:
    return Path(os.environ.get("OMNI_LAB_INVENTORY") or REPO / ".lab" / "inventory")


def lab_required() -> bool:
    return os.environ.get("OMNI_LAB_REQUIRED") == "1"


def load_hosts(directory: Path) -> HostsFile:
    """The lab's hosts file, identities made absolute."""
    raw = yaml.safe_load((directory / "hosts.yaml").read_text())
    hosts = HostsFile.model_validate(raw)
    fixed = {}
    for name, host in hosts.hosts.items():
        if host.identity and not os.path.isabs(os.path.expanduser(host.identity)):
            host = host.model_copy(update={"identity": str(directory / host.identity)})
        fixed[name] = host
    return hosts.model_copy(update={"hosts": fixed})


def wait_until(
    probe: Callable[[], T], *, timeout: float = 15.0, interval: float = 0.1, what: str = ""
) -> T:
    """Poll ``probe`` until it returns a truthy value; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or probe}")
        time.sleep(interval)


def fresh_public_key(key_type: str) -> str:
    """An OpenSSH public key line of ``key_type`` that no server holds (freshly generated)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    private: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    if key_type == "ssh-ed25519":
        private = ed25519.Ed25519PrivateKey.generate()
    elif key_type.startswith("ecdsa-sha2-nistp"):
        curve = {"256": ec.SECP256R1(), "384": ec.SECP384R1(), "521": ec.SECP521R1()}
        private = ec.generate_private_key(curve[key_type[-3:]])
    elif key_type == "ssh-rsa":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        raise ValueError(key_type)
    return (
        private.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )


def fresh_identity(directory: Path) -> str:
    """A new ed25519 private key file (OpenSSH format, 0600) that no server authorizes."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    path = directory / "id_stranger"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    return str(path)


def with_changes(host: Host, **changes: object) -> Host:
    """A copy of ``host`` with fields replaced, re-validated by the model."""
    return Host.model_validate({**host.model_dump(), **changes})
