"""Leased locks on the lab: a dead or frozen holder loses the lock within its lease, and a
run that finds the lock taken is told who holds it, since when and for what.

Holders that die or freeze are real processes (a tiny Python script holding the lock through
``HostSession``), killed with SIGKILL or stopped with SIGSTOP. Timing lives only in deadlines.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from omni.errors import LockHeld
from omni.hosts.lock import LockOwner
from omni.hosts.session import HostSession
from omni.inventory.models import Host
from tests import lab as labmod
from tests.lab import wait_until

pytestmark = pytest.mark.lab

LEASE = 4.0  # seconds: short, so a lapsed lease shows up quickly
MARGIN = 15.0  # slack on top of the lease for SSH round trips on a busy machine

HOLDER_SCRIPT = """
import sys, time
from omni.hosts.lock import LockOwner
from omni.hosts.session import HostSession
from tests.lab import inventory_dir, load_hosts

host_name, lock_name, lease = sys.argv[1], sys.argv[2], float(sys.argv[3])
host = load_hosts(inventory_dir()).hosts[host_name]
owner = LockOwner.of_process(who="lease-test-holder", argv=["holder", lock_name])
session = HostSession(host, lock_lease_seconds=lease, lock_owner=owner)
with session.lock(lock_name, purpose="lease test"):
    print("held", flush=True)
    time.sleep(600)
"""

Opener = Callable[..., HostSession]


@pytest.fixture
def open_session() -> Iterator[Opener]:
    """Factory: ``open_session(host, **HostSession kwargs)``; all closed at teardown."""
    opened: list[HostSession] = []

    def make(host: Host, **kwargs: Any) -> HostSession:
        s = HostSession(host, connect_timeout=10, **kwargs)
        opened.append(s)
        return s

    yield make
    for s in opened:
        s.close()


@pytest.fixture
def lock_name(dev_host: Host, open_session: Opener) -> Iterator[str]:
    """A fresh lock name; its lock and holder files are removed afterwards."""
    name = "test-lease-" + uuid.uuid4().hex[:8]
    yield name
    transport = open_session(dev_host).transport
    for suffix in ("lock", "holder"):
        transport.remove_file(f"{dev_host.state_dir}/locks/{name}.{suffix}")


@pytest.fixture
def holder_process(dev_host: Host, lock_name: str) -> Iterator[subprocess.Popen[str]]:
    """A separate process holding ``lock_name`` on dev with a LEASE-second lease; it has
    the lock when this fixture returns. Killed (and continued first) at teardown."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER_SCRIPT, dev_host.name, lock_name, str(LEASE)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=labmod.REPO,
        env={**os.environ, "OMNI_LAB_INVENTORY": str(labmod.inventory_dir())},
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        line = proc.stdout.readline() if ready else ""
        assert line.strip() == "held", (
            f"holder did not take the lock: {line!r} "
            f"{proc.stderr.read() if proc.poll() is not None and proc.stderr else ''}"
        )
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
        proc.wait(timeout=30)


def _acquirable(session: HostSession, name: str) -> Callable[[], bool]:
    def probe() -> bool:
        try:
            with session.lock(name):
                return True
        except LockHeld:
            return False

    return probe


def test_a_killed_holder_loses_the_lock_within_the_lease(
    dev_host: Host, open_session: Opener, lock_name: str,
    holder_process: subprocess.Popen[str],
) -> None:
    other = open_session(dev_host, lock_lease_seconds=LEASE)
    with pytest.raises(LockHeld) as info, other.lock(lock_name):
        pass
    assert "lease-test-holder" in info.value.message
    holder_process.kill()  # SIGKILL: no cleanup code runs in the holder
    holder_process.wait(timeout=30)
    wait_until(_acquirable(other, lock_name), timeout=LEASE + MARGIN, interval=0.2,
               what=f"lock {lock_name} to be free after its holder was killed")


def test_a_frozen_holder_loses_the_lock_when_its_lease_lapses(
    dev_host: Host, open_session: Opener, lock_name: str,
    holder_process: subprocess.Popen[str],
) -> None:
    other = open_session(dev_host, lock_lease_seconds=LEASE)
    # Frozen, the holder's TCP connection stays up (as when a network is cut and the
    # connection is half-open): only the missing heartbeats can free the lock.
    holder_process.send_signal(signal.SIGSTOP)
    with pytest.raises(LockHeld), other.lock(lock_name):
        pass
    wait_until(_acquirable(other, lock_name), timeout=LEASE + MARGIN, interval=0.2,
               what=f"lock {lock_name} to be free after its holder froze")
    assert holder_process.poll() is None, "the holder must still be alive, only frozen"
    # The lock stays usable: the thawed holder's late heartbeats do not disturb it.
    holder_process.send_signal(signal.SIGCONT)
    with other.lock(lock_name, purpose="after the thaw"):
        pass


def test_a_second_run_is_told_who_holds_the_lock_and_with_a_wait_gets_it(
    dev_host: Host, open_session: Opener, lock_name: str
) -> None:
    alice = LockOwner(who="alice@ops", pid=4242, hostname="laptop-a", command="omni deploy acme")
    bob = LockOwner(who="bob@ops", pid=77, hostname="laptop-b", command="omni restart acme")
    first = open_session(dev_host, lock_lease_seconds=LEASE, lock_owner=alice)
    second = open_session(dev_host, lock_lease_seconds=LEASE, lock_owner=bob)
    observer = open_session(dev_host).transport
    holder_file = f"{dev_host.state_dir}/locks/{lock_name}.holder"
    lock_file = f"{dev_host.state_dir}/locks/{lock_name}.lock"

    held = first.lock(lock_name, purpose="deploy acme")
    held.__enter__()
    try:
        with pytest.raises(LockHeld) as info, second.lock(lock_name, purpose="restart acme"):
            pass
        message = info.value.message
        assert "\n" not in message
        assert "alice@ops" in message and "'deploy acme'" in message
        assert " since 20" in message and "did not wait" in message
        assert info.value.exit_code == 4
        holder = info.value.fields["holder"]
        assert holder["who"] == "alice@ops" and holder["purpose"] == "deploy acme"
        assert holder["hostname"] == "laptop-a" and holder["command"] == "omni deploy acme"
        found = observer.stat(holder_file)
        assert found is not None and found.mode == 0o600
    except BaseException:
        held.__exit__(None, None, None)
        raise

    errors: list[BaseException] = []

    def release_once_second_waits() -> None:
        try:
            wait_until(
                lambda: observer.run(
                    ["pgrep", "-f", "--", f"^flock -w [0-9.]+ -E [0-9]+ {lock_file} "],
                    check=False,
                ).ok,
                timeout=20,
                interval=0.05,
                what="the second run to wait on the lock",
            )
        except BaseException as exc:
            errors.append(exc)
        finally:
            held.__exit__(None, None, None)

    releaser = threading.Thread(target=release_once_second_waits, daemon=True)
    releaser.start()
    try:
        with second.lock(lock_name, wait_seconds=30, purpose="restart acme"):
            raw = observer.read_file(holder_file)
            assert raw is not None
            assert json.loads(raw)["who"] == "bob@ops"
    finally:
        releaser.join(timeout=60)
    assert not errors, errors
    assert observer.read_file(holder_file) is None  # the holder file goes with the lock
