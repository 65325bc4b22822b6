"""Pure planning of a tenant's files, containers and migrations (no server)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from omni.engine.step import Verb
from omni.resources.containers import CONFIG_HASH_LABEL, ContainerState, TenantContainer
from omni.resources.files import FileState, ManagedFile
from omni.resources.migrations import Migrations, MigrationState
from omni.tenant.ports import first_free, listening_ports
from omni.tenant.secrets import TenantSecrets
from tests.factories import make_host, make_secrets

SECRET = "s3cr3t-value-that-must-never-show"


def _file(content: str, display: str) -> ManagedFile:
    return ManagedFile("medusa.env", "/srv/t/medusa.env", content.encode(), 0o600, display)


def test_file_plan_creates_with_masked_diff() -> None:
    (step,) = _file(f"A=1\nJWT_SECRET={SECRET}\n", "A=1\nJWT_SECRET=********\n").plan(
        FileState(None)
    )
    assert step.verb is Verb.CREATE
    assert step.diff is not None and "+JWT_SECRET=********" in step.diff
    assert SECRET not in json.dumps(step.to_dict())


def test_file_plan_is_noop_when_bytes_match() -> None:
    content = f"A=1\nJWT_SECRET={SECRET}\n"
    (step,) = _file(content, "A=1\nJWT_SECRET=********\n").plan(FileState(content.encode(), "600"))
    assert step.verb is Verb.NOOP


def test_file_plan_update_masks_unknown_old_values() -> None:
    old = b"A=0\nOLD_TOKEN=leaked-if-shown-123456\nJWT_SECRET=" + SECRET.encode() + b"\n"
    (step,) = _file(f"A=1\nJWT_SECRET={SECRET}\n", "A=1\nJWT_SECRET=********\n").plan(
        FileState(old, "600")
    )
    assert step.verb is Verb.UPDATE
    assert step.diff is not None
    assert "leaked-if-shown" not in step.diff and SECRET not in step.diff
    assert "-A=********" in step.diff and "+A=1" in step.diff


def _container(**overrides: object) -> TenantContainer:
    base: dict[str, object] = {
        "key": "medusa.app",
        "name": "omni-acme-app",
        "image": "omni-lab/medusa:v1",
        "command": None,
        "env": {"JWT_SECRET": SECRET},
        "labels": {"omni.tenant": "acme"},
    }
    base.update(overrides)
    return TenantContainer(**base)  # type: ignore[arg-type]


def _info(labels: dict[str, str], running: bool = True, image_id: str = "sha256:aaa") -> object:
    from omni.hosts.docker import ContainerInfo

    return ContainerInfo(
        id="c1",
        name="omni-acme-app",
        image="omni-lab/medusa:v1",
        image_id=image_id,
        running=running,
        status="running" if running else "exited",
        labels=labels,
        env={},
        cmd=[],
        restart_policy="unless-stopped",
    )


def test_container_plan_create_replace_start_noop() -> None:
    c = _container()
    want = c.desired_hash("sha256:aaa")
    assert c.plan(ContainerState("sha256:aaa", None))[0].verb is Verb.CREATE
    fresh = _info({CONFIG_HASH_LABEL: want})
    assert c.plan(ContainerState("sha256:aaa", fresh))[0].verb is Verb.NOOP  # type: ignore[arg-type]
    stale = _info({CONFIG_HASH_LABEL: "old"})
    assert c.plan(ContainerState("sha256:aaa", stale))[0].verb is Verb.REPLACE  # type: ignore[arg-type]
    stopped = _info({CONFIG_HASH_LABEL: want}, running=False)
    assert c.plan(ContainerState("sha256:aaa", stopped))[0].verb is Verb.UPDATE  # type: ignore[arg-type]


def test_container_hash_changes_with_env_and_image_but_plan_hides_env() -> None:
    c = _container()
    other = _container(env={"JWT_SECRET": SECRET + "x"})
    assert c.desired_hash("sha256:aaa") != other.desired_hash("sha256:aaa")
    assert c.desired_hash("sha256:aaa") != c.desired_hash("sha256:bbb")
    (step,) = c.plan(ContainerState("sha256:aaa", None))
    assert SECRET not in json.dumps(step.to_dict())


def test_container_plan_refuses_missing_image() -> None:
    from omni.errors import StepFailed

    with pytest.raises(StepFailed, match="not present on the host"):
        _container().plan(ContainerState(None, None))


def _joined(**info: object) -> tuple[TenantContainer, object, object]:
    """An app joined to a gateway's namespace, the gateway's info and the app's info."""
    from omni.hosts.docker import ContainerInfo

    gateway = _container(name="omni-acme-gw", image="omni-lab/gateway:1", env={},
                         network="none")
    app = _container(joins=gateway)
    owner = ContainerInfo(id="g1", name="omni-acme-gw", image="omni-lab/gateway:1",
                          image_id="sha256:ggg", running=True, status="running", labels={},
                          env={}, cmd=(), restart_policy="unless-stopped",
                          started_at="2026-12-02T10:00:01.5Z")
    want = app.desired_hash("sha256:aaa", "sha256:ggg")
    fields = {"network_mode": "container:g1", "started_at": "2026-12-02T10:00:01.52Z", **info}
    found = dataclasses.replace(_info({CONFIG_HASH_LABEL: want}), **fields)  # type: ignore[type-var]
    return app, owner, found


def test_a_joined_container_follows_its_namespace_owner() -> None:
    app, owner, found = _joined()
    assert app.network_mode == "container:omni-acme-gw"
    up_to_date = ContainerState("sha256:aaa", found, owner, "sha256:ggg")  # type: ignore[arg-type]
    assert app.plan(up_to_date)[0].verb is Verb.NOOP  # .5 s < .52 s: not a string compare
    # The owner is being created (again): its new id will not be the one pinned here.
    assert app.plan(ContainerState("sha256:aaa", found, None, "sha256:ggg"))[0].verb \
        is Verb.REPLACE  # type: ignore[arg-type]
    # The owner was created again since this container was.
    moved = dataclasses.replace(owner, id="g2")  # type: ignore[type-var]
    assert app.plan(ContainerState("sha256:aaa", found, moved, "sha256:ggg"))[0].verb \
        is Verb.REPLACE  # type: ignore[arg-type]
    # The owner restarted after this container started: same id, a new namespace.
    later = dataclasses.replace(owner, started_at="2026-12-02T10:00:02Z")  # type: ignore[type-var]
    step = app.plan(ContainerState("sha256:aaa", found, later, "sha256:ggg"))[0]  # type: ignore[arg-type]
    assert step.verb is Verb.UPDATE and "namespace" in step.summary
    # A new gateway image (or configuration) changes the joined container's own hash.
    rebuilt = ContainerState("sha256:aaa", found, owner, "sha256:hhh")  # type: ignore[arg-type]
    assert app.plan(rebuilt)[0].verb is Verb.REPLACE


def test_started_stamps_compare_by_time_not_by_text() -> None:
    from omni.resources.containers import started_key

    assert started_key("2026-12-02T10:00:01.5Z") < started_key("2026-12-02T10:00:01.52Z")
    assert started_key("2026-12-02T10:00:01Z") < started_key("2026-12-02T10:00:01.000000001Z")
    assert started_key("2026-12-02T10:00:01.9Z") < started_key("2026-12-02T10:00:02Z")


def _migrations() -> Migrations:
    return Migrations(
        container_name="omni-acme-migrate",
        image="omni-lab/medusa:v1",
        command=("medusa", "db:migrate"),
        env={"JWT_SECRET": SECRET},
        labels={},
        marker_path="/srv/t/migrated-image",
        redact=lambda s: s.replace(SECRET, "********"),
    )


@pytest.mark.parametrize(
    ("state", "verb"),
    [
        (MigrationState("sha256:aaa", None), Verb.RUN),
        (MigrationState("sha256:bbb", "sha256:aaa"), Verb.RUN),
        (MigrationState("sha256:aaa", "sha256:aaa"), Verb.NOOP),
    ],
)
def test_migrations_run_only_for_a_new_image(state: MigrationState, verb: Verb) -> None:
    assert _migrations().plan(state)[0].verb is verb


def test_listening_ports_parses_ss() -> None:
    out = (
        "LISTEN 0 511 127.0.0.2:80 0.0.0.0:*\n"
        "LISTEN 0 128 [::1]:6400 [::]:*\n"
        "LISTEN 0 4096 *:9000 *:*\n"
        "garbage\n"
    )
    assert listening_ports(out) == {80, 6400, 9000}


def test_first_free_skips_taken_and_reports_full() -> None:
    ports = make_host().app_ports
    assert first_free(ports, {ports.start, ports.start + 1}) == ports.start + 2
    assert first_free(ports, range(ports.start, ports.end + 1)) is None


def test_secrets_roundtrip_and_never_repr() -> None:
    secrets = make_secrets()
    assert TenantSecrets.from_json(secrets.to_json()) == secrets
    assert secrets.db_password not in repr(secrets) and secrets.db_password not in str(secrets)
    generated = TenantSecrets.generate()
    assert len(set(generated.values())) == 4
    assert all(len(v) >= 32 for v in generated.values())


def test_file_plan_fixes_owner_without_rewriting() -> None:
    managed = ManagedFile(
        "redis.config", "/srv/t/redis.conf", b"x\n", 0o600, "x\n", owner="999:999"
    )
    (step,) = managed.plan(FileState(b"x\n", "600", "0:0"))
    assert step.verb is Verb.UPDATE
    assert step.changes[0].after == "999:999"
    assert step.diff is None
    assert managed.plan(FileState(b"x\n", "600", "999:999"))[0].verb is Verb.NOOP


def test_file_plan_tightens_a_loosened_mode() -> None:
    managed = ManagedFile("medusa.env", "/srv/t/medusa.env", b"x\n", 0o600, "x\n")
    (step,) = managed.plan(FileState(b"x\n", "644", "0:0"))
    assert step.verb is Verb.UPDATE
    assert (step.changes[0].field, step.changes[0].before, step.changes[0].after) == (
        "mode",
        "644",
        "600",
    )


def _choose(
    tenant_ports: dict[str, int], registry: dict[str, dict[str, int]], listening: set[int]
) -> tuple[int, int]:
    from omni.tenant.ports import choose_ports
    from tests.factories import make_tenant

    tenant = make_tenant(**tenant_ports)
    other = make_tenant(slug="other", domains=["o.example.com"], app_port=9003, redis_port=6403)
    return choose_ports(tenant, make_host(), registry, [other], listening)


@pytest.mark.parametrize(
    ("tenant_ports", "registry", "listening", "expected"),
    [
        ({}, {}, set(), (9000, 6400)),
        ({"app_port": 9100, "redis_port": 6500}, {}, set(), (9100, 6500)),
        # the file lost its ports: the host's registry remembers them
        ({}, {"acme": {"app_port": 9007, "redis_port": 6407}}, {9007, 6407}, (9007, 6407)),
        # other tenants (registry, inventory) and other listeners are skipped
        ({}, {"x": {"app_port": 9000, "redis_port": 6400}}, {9001, 6401}, (9002, 6402)),
    ],
)
def test_choose_ports(
    tenant_ports: dict[str, int],
    registry: dict[str, dict[str, int]],
    listening: set[int],
    expected: tuple[int, int],
) -> None:
    assert _choose(tenant_ports, registry, listening) == expected


def test_choose_ports_refuses_a_port_owned_by_another_tenant() -> None:
    from omni.errors import InvalidInput

    registry = {"x": {"app_port": 9000, "redis_port": 1}}
    with pytest.raises(InvalidInput, match="app_port: port 9000 on host dev belongs to tenant 'x'"):
        _choose({"app_port": 9000, "redis_port": 6499}, registry, set())


def test_plain_app_has_no_migrations_and_no_onboarding() -> None:
    from omni.tenant.resources import migrations_resource, tenant_resources
    from tests.factories import make_spec

    medusa_keys = [r.key for r in tenant_resources(make_spec())]
    plain = make_spec(app_kind="plain")
    plain_keys = [r.key for r in tenant_resources(plain)]
    assert "medusa.publishable_key" in medusa_keys
    assert plain_keys == [k for k in medusa_keys if k not in
                          ("medusa.admin", "medusa.publishable_key")]
    (step,) = migrations_resource(plain).plan(MigrationState("sha256:new", None))
    assert step.verb is Verb.NOOP
    (step,) = migrations_resource(make_spec()).plan(MigrationState("sha256:new", None))
    assert step.verb is Verb.RUN
