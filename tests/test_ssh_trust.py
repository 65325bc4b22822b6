"""SSH trust: only inventory-pinned host keys and the configured identity get in.

Each refusal must name the host, be of its own error class, and happen before anything runs
on the server (a marker file a successful run would create stays absent).
"""

from __future__ import annotations

import logging
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from omni.errors import AuthenticationFailed, HostKeyMismatch, HostUnreachable
from omni.hosts.session import HostSession
from omni.inventory.models import Host
from omni.transport.ssh import fingerprint, known_hosts_name, parse_pins
from tests.lab import fresh_identity, fresh_public_key, with_changes

pytestmark = pytest.mark.lab

KEY_TYPES = ["ssh-ed25519", "ecdsa-sha2-nistp256", "ssh-rsa"]


@pytest.fixture
def marker(dev_host: Host, session: Callable[[Host], HostSession]) -> Iterator[str]:
    """A path on the dev host that a refused run would have created."""
    path = f"/tmp/omni-trust-{uuid.uuid4().hex}"
    yield path
    session(dev_host).transport.remove_file(path)


def assert_not_created(dev_host: Host, session: Callable[[Host], HostSession], path: str) -> None:
    assert session(dev_host).transport.read_file(path) is None, "a refused run executed"


def pinned_types(host: Host) -> list[str]:
    return [line.split()[0] for line in host.host_keys]


def test_pinned_host_and_identity_connect(
    dev_host: Host, session: Callable[[Host], HostSession], marker: str
) -> None:
    session(dev_host).transport.run(["touch", marker])
    assert session(dev_host).transport.read_file(marker) == b""


def test_unknown_host_key_is_refused_with_fingerprint(
    dev_host: Host, session: Callable[[Host], HostSession], marker: str
) -> None:
    unpinned = [t for t in KEY_TYPES if t not in pinned_types(dev_host)]
    assert unpinned, "the lab pins every key type; cannot build an unknown-key case"
    stranger = with_changes(dev_host, host_keys=[fresh_public_key(unpinned[0])])
    with pytest.raises(HostKeyMismatch) as info:
        HostSession(stranger).transport.run(["touch", marker])
    message = str(info.value)
    assert "host dev" in message
    assert "unknown host key" in message
    seen = info.value.fields["fingerprint"]
    assert seen is not None
    assert seen.startswith("SHA256:")
    assert seen in message
    # The fingerprint reported is the server's real key (pinned in the real inventory).
    assert seen in {fingerprint(k) for k in parse_pins(dev_host)}
    assert_not_created(dev_host, session, marker)


def test_changed_host_key_is_refused_with_fingerprint(
    dev_host: Host, session: Callable[[Host], HostSession], marker: str
) -> None:
    impostor_pins = [fresh_public_key(t) for t in pinned_types(dev_host)]
    changed = with_changes(dev_host, host_keys=impostor_pins)
    with pytest.raises(HostKeyMismatch) as info:
        HostSession(changed).transport.run(["touch", marker])
    message = str(info.value)
    assert "host dev" in message
    assert "changed" in message
    assert info.value.fields["fingerprint"] in {fingerprint(k) for k in parse_pins(dev_host)}
    assert info.value.fields["fingerprint"] in message
    assert_not_created(dev_host, session, marker)


def test_wrong_user_is_refused(
    dev_host: Host, session: Callable[[Host], HostSession], marker: str
) -> None:
    stranger = with_changes(dev_host, user="nobody")
    with pytest.raises(AuthenticationFailed) as info:
        HostSession(stranger).transport.run(["touch", marker])
    assert "host dev" in str(info.value)
    assert "nobody" in str(info.value)
    assert_not_created(dev_host, session, marker)


def test_wrong_identity_is_refused(
    dev_host: Host,
    session: Callable[[Host], HostSession],
    marker: str,
    tmp_path: Path,
) -> None:
    stranger = with_changes(dev_host, identity=fresh_identity(tmp_path))
    with pytest.raises(AuthenticationFailed) as info:
        HostSession(stranger).transport.run(["touch", marker])
    assert "host dev" in str(info.value)
    assert "id_stranger" in str(info.value)
    assert_not_created(dev_host, session, marker)


def test_nothing_listening_is_unreachable(dev_host: Host) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    closed = with_changes(dev_host, address="127.0.0.1", port=free_port)
    with pytest.raises(HostUnreachable) as info:
        HostSession(closed, connect_timeout=5).transport.run(["true"])
    assert type(info.value) is HostUnreachable
    assert "host dev" in str(info.value)


def test_non_default_port_pins_use_bracketed_name() -> None:
    assert known_hosts_name("127.0.0.2", 22) == "127.0.0.2"
    assert known_hosts_name("127.0.0.2", 2222) == "[127.0.0.2]:2222"


@pytest.fixture
def logger_levels() -> Iterator[None]:
    """Restore the root and paramiko logger levels the test changes."""
    root, paramiko_logger = logging.getLogger(), logging.getLogger("paramiko")
    saved = root.level, paramiko_logger.level
    paramiko_logger.setLevel(logging.NOTSET)
    yield
    root.setLevel(saved[0])
    paramiko_logger.setLevel(saved[1])


@pytest.mark.parametrize(
    ("root_level", "expected"),
    [(logging.DEBUG, logging.NOTSET), (logging.WARNING, logging.CRITICAL)],
)
def test_paramiko_logging_is_silenced_only_when_not_verbose(
    dev_host: Host, logger_levels: None, root_level: int, expected: int
) -> None:
    logging.getLogger().setLevel(root_level)
    session = HostSession(dev_host)
    try:
        assert session.transport.run(["true"]).ok
    finally:
        session.close()
    assert logging.getLogger("paramiko").level == expected


@pytest.mark.parametrize("real_first", [True, False])
def test_key_rotation_two_pins_of_one_type_both_trusted(
    dev_host: Host, session: Callable[[Host], HostSession], real_first: bool
) -> None:
    """During a rotation the inventory pins the old and the new key of the same type; the
    server presenting either must be accepted, whichever order the pins are in."""
    real = dev_host.host_keys[0]
    other = fresh_public_key(real.split()[0])
    pins = [real, other] if real_first else [other, real]
    rotating = with_changes(dev_host, host_keys=pins)
    assert session(rotating).transport.run(["true"]).ok
