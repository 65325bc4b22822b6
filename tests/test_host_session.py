"""Host sessions on the lab: tunnelled Postgres, Docker over pinned SSH, server-side locks.

Each scenario runs over SSH (the production path) and, where the lab allows, over the local
transport (omni running on the server itself).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from omni.errors import InvalidInput, LockHeld, StepFailed
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
        if host.transport == "ssh":
            # Reached through our local forward, not the server's port directly.
            assert conn.info.host == "127.0.0.1"
            assert conn.info.port != host.postgres.port
    with s.postgres() as again:  # the same tunnel serves a second connection
        assert again.execute("SELECT 1").fetchone() == (1,)


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
