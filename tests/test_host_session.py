"""Host sessions on the lab: tunnelled Postgres, Docker over pinned SSH, server-side locks.

Each scenario runs over SSH (the production path) and, where the lab allows, over the local
transport (omni running on the server itself).
"""

from __future__ import annotations

import os
import re
import stat
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from omni.errors import HostUnreachable, InvalidInput, LockHeld, StepFailed
from omni.hosts.docker import ContainerSpec
from omni.hosts.session import HostSession, SessionPool
from omni.inventory.models import Host, HostsFile
from tests.lab import wait_until, with_changes

pytestmark = pytest.mark.lab

Opener = Callable[[Host], HostSession]


@pytest.fixture(params=["ssh", "local"])
def host(request: pytest.FixtureRequest, dev_host: Host) -> Host:
    if request.param == "local":
        return with_changes(dev_host, transport="local", host_keys=[])
    return dev_host


def test_postgres_answers_through_the_tunnel(host: Host, session: Opener) -> None:
    s = session(host)
    with s.postgres() as conn:
        row = conn.execute("SELECT version(), current_user").fetchone()
        assert row is not None
        version, user = row
        assert str(version).startswith("PostgreSQL ")
        assert user == host.postgres.admin_user
        assert conn.autocommit
    with s.connect_as(  # a second, separate connection through the same forward
        host.postgres.admin_user, s._admin_password(), "postgres"
    ) as other:
        assert other.execute("SELECT 1").fetchone() == (1,)
    assert other.closed  # connect_as hands over ownership: its `with` closes it


def test_postgres_forward_is_a_private_unix_socket_removed_at_close(
    dev_host: Host, session: Opener
) -> None:
    s = session(dev_host)
    with s.postgres() as conn:
        directory = Path(conn.info.host)
        # libpq reports the socket directory as the host: not a TCP address.
        assert directory.is_absolute(), conn.info.host
        info = directory.stat()
        assert stat.S_IMODE(info.st_mode) == 0o700
        assert info.st_uid == os.getuid()
        socket_file = directory / f".s.PGSQL.{conn.info.port}"
        assert stat.S_ISSOCK(socket_file.stat().st_mode)
    s.close()
    assert not directory.exists()


def test_admin_connection_and_password_are_kept_per_session(
    host: Host, session: Opener, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = session(host)
    reads: list[str] = []
    real_read = s.transport.read_file

    def counting_read(path: str) -> bytes | None:
        reads.append(path)
        return real_read(path)

    monkeypatch.setattr(s.transport, "read_file", counting_read)
    pids = []
    for _ in range(3):
        with s.postgres() as conn:
            pids.append(conn.execute("SELECT pg_backend_pid()").fetchone())
        assert not conn.closed  # leaving `with` keeps the shared connection open
    assert pids[0] is not None
    assert pids == [pids[0]] * 3
    with s.postgres("template1") as other_db:
        row = other_db.execute("SELECT current_database(), pg_backend_pid()").fetchone()
    assert row is not None
    assert row[0] == "template1"
    assert (row[1],) != pids[0]
    assert reads == [host.postgres.admin_password_file]  # read once per session

    conn.connection.close()  # a lost connection is replaced on the next call
    with s.postgres() as fresh:
        assert fresh.execute("SELECT 1").fetchone() == (1,)
        assert fresh.connection is not conn.connection

    s.close()
    assert fresh.closed
    assert other_db.closed


def test_postgres_wrong_password_fails_without_echoing_it(host: Host, session: Opener) -> None:
    password = "wrong-" + uuid.uuid4().hex
    with pytest.raises(StepFailed) as info:
        session(host).connect_as(host.postgres.admin_user, password, "postgres")
    assert password not in str(info.value)
    assert "host dev" in str(info.value)


def test_docker_version_and_images_over_the_session(host: Host, session: Opener) -> None:
    engine = session(host).docker()
    assert engine.version()[0].isdigit()
    assert host.redis_image in engine.images()
    assert (engine.image_id(host.redis_image) or "").startswith("sha256:")
    assert engine.image_id("omni-absent/none:" + uuid.uuid4().hex[:8]) is None


def test_docker_run_once_returns_exit_code_and_logs_and_removes(
    host: Host, session: Opener
) -> None:
    engine = session(host).docker()
    name = "omni-test-once-" + uuid.uuid4().hex[:8]
    spec = ContainerSpec(
        name=name,
        image=host.redis_image,
        entrypoint=["sh", "-c"],
        command=['echo "hello $GREETING"; echo oops >&2; exit 3'],
        env={"GREETING": "sekrit-value"},
    )
    assert "sekrit-value" not in repr(spec)
    code, logs = engine.run_once(spec, timeout=60)
    assert code == 3
    assert b"hello sekrit-value" in logs
    assert b"oops" in logs
    assert engine.container(name) is None


def test_docker_container_lifecycle(host: Host, session: Opener) -> None:
    engine = session(host).docker()
    tag = uuid.uuid4().hex[:8]
    name, renamed = f"omni-test-{tag}", f"omni-test-{tag}-old"
    labels = {"omni.test": tag}
    try:
        engine.create_and_start(
            ContainerSpec(
                name=name,
                image=host.redis_image,
                entrypoint=["sleep"],
                command=["600"],
                env={"TOKEN": "tok-" + tag},
                labels=labels,
            )
        )
        info = engine.container(name)
        assert info is not None
        assert (info.running, info.image, info.restart_policy) == (
            True, host.redis_image, "unless-stopped"
        )
        assert info.env["TOKEN"] == "tok-" + tag
        assert "tok-" + tag not in repr(info)
        assert (info.entrypoint, info.cmd) == (("sleep",), ("600",))
        assert [c.name for c in engine.list_containers(labels)] == [name]
        engine.rename(name, renamed)
        assert engine.container(name) is None
        engine.stop(renamed, timeout=1)
        stopped = engine.container(renamed)
        assert stopped is not None
        assert not stopped.running
    finally:
        engine.remove(name, force=True)
        engine.remove(renamed, force=True)
    assert engine.list_containers(labels) == []


@pytest.fixture
def lock_name(dev_host: Host, session: Opener) -> Iterator[str]:
    """A fresh lock name; its lock file is removed afterwards."""
    name = "test-" + uuid.uuid4().hex[:8]
    yield name
    session(dev_host).transport.remove_file(f"{dev_host.state_dir}/locks/{name}.lock")


def test_lock_held_twice_is_refused_then_free_again(
    host: Host, session: Opener, lock_name: str
) -> None:
    name = lock_name
    first, second = session(host), session(host)
    with first.lock(name):
        with pytest.raises(LockHeld) as info, second.lock(name):
            pass
        assert name in str(info.value)
    with second.lock(name):
        pass


def test_lock_is_released_when_the_holder_connection_dies(
    dev_host: Host, session: Opener, lock_name: str
) -> None:
    name = lock_name
    holder, other = session(dev_host), session(dev_host)
    held = holder.lock(name)
    held.__enter__()
    with pytest.raises(LockHeld), other.lock(name):
        pass
    holder.transport.close()  # the client "dies": its SSH connection drops

    def acquired() -> bool:
        try:
            with other.lock(name):
                return True
        except LockHeld:
            return False

    wait_until(acquired, timeout=15, what=f"lock {name} to be released")


def test_lock_waits_for_the_holder_to_release(
    host: Host, session: Opener, lock_name: str
) -> None:
    name = lock_name
    first, second = session(host), session(host)
    observer = session(host).transport
    lock_file = f"{host.state_dir}/locks/{name}.lock"
    held = first.lock(name)
    held.__enter__()
    released = threading.Event()
    errors: list[BaseException] = []

    def release_once_second_waits() -> None:
        try:
            # The second run's flock is queued on the server, waiting on this lock file.
            wait_until(
                lambda: observer.run(
                    # Anchored, so it cannot match the pgrep/timeout command lines.
                    ["pgrep", "-f", "--", f"^flock -w [0-9.]+ -E [0-9]+ {re.escape(lock_file)} "],
                    check=False,
                ).ok,
                timeout=10,
                interval=0.05,
                what="the second flock to start waiting",
            )
            released.set()
            held.__exit__(None, None, None)
        except BaseException as exc:
            errors.append(exc)
            held.__exit__(None, None, None)

    releaser = threading.Thread(target=release_once_second_waits, daemon=True)
    releaser.start()
    try:
        with second.lock(name, wait_seconds=5):
            assert released.is_set(), "got the lock while the first holder still had it"
    finally:
        releaser.join(timeout=30)
    assert not errors, errors
    assert not releaser.is_alive()


def test_lock_wait_that_runs_out_raises_lock_held(
    host: Host, session: Opener, lock_name: str
) -> None:
    name = lock_name
    first, second = session(host), session(host)
    with (
        first.lock(name),
        pytest.raises(LockHeld) as info,
        second.lock(name, wait_seconds=0.5),
    ):
        pass
    message = str(info.value)
    assert repr(name) in message
    assert "waited 0.5s" in message
    assert info.value.fields["waited_seconds"] == 0.5
    with second.lock(name, wait_seconds=0.5):  # free again
        pass


def test_negative_lock_wait_is_refused(dev_host: Host, session: Opener) -> None:
    with pytest.raises(InvalidInput, match="wait_seconds"), session(dev_host).lock(
        "test-negative", wait_seconds=-1
    ):
        pass


def test_docker_errors_name_host_and_operation_never_env_values(
    dev_host: Host, session: Opener
) -> None:
    engine = session(dev_host).docker()
    secret = "sekrit-" + uuid.uuid4().hex
    spec = ContainerSpec(
        name="omni-test-bad-" + uuid.uuid4().hex[:8],
        image="omni-absent/none:" + uuid.uuid4().hex[:8],
        env={"TOKEN": secret},
    )
    with pytest.raises(StepFailed) as info:
        engine.create_and_start(spec)
    message = str(info.value)
    assert "host dev" in message
    assert f"create container {spec.name}" in message
    assert secret not in message
    assert engine.container(spec.name) is None


def test_docker_after_connection_loss_raises_omni_errors(
    dev_host: Host, session: Opener
) -> None:
    s = session(dev_host)
    engine = s.docker()
    assert engine.version()
    s.transport.close()
    with pytest.raises((HostUnreachable, StepFailed)) as info:
        engine.version()
    assert "host dev" in str(info.value)


def test_invalid_lock_name_is_refused(dev_host: Host, session: Opener) -> None:
    with pytest.raises(InvalidInput), session(dev_host).lock("../etc/passwd"):
        pass


def test_session_pool_gives_one_session_per_host(lab_hosts: HostsFile) -> None:
    with SessionPool(lab_hosts.hosts) as pool:
        assert pool.get("dev") is pool.get("dev")
        assert pool.get("dev") is not pool.get("netcup")
        assert pool.get("dev").transport.run(["true"]).ok
        with pytest.raises(InvalidInput, match="not in the inventory"):
            pool.get("nowhere")
