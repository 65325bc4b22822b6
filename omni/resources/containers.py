"""Long-running tenant containers (Redis, the Medusa app) and their replacement rules.

A container's desired configuration is summarised in a ``omni.config-hash`` label: the
image id, command, environment and mounted files. A different hash means replace; a
stopped container means start. Env values are secrets: they reach Docker, never a step.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from omni.engine.step import FieldChange, Step, Verb, noop
from omni.errors import StepFailed

if TYPE_CHECKING:
    from omni.hosts.docker import ContainerInfo, RuntimeLimits
    from omni.hosts.session import HostSession

CONFIG_HASH_LABEL = "omni.config-hash"


@dataclass(frozen=True)
class ContainerState:
    image_id: str | None  # of the desired image reference on the host; None: not present
    container: ContainerInfo | None
    # The container owning the network namespace this one joins (None: none, or absent),
    # and the id of the image it should run.
    network_owner: ContainerInfo | None = None
    network_owner_image_id: str | None = None


def config_hash(
    image_id: str,
    command: Sequence[str] | None,
    env: Mapping[str, str],
    mounts: Sequence[tuple[str, str, bool]],
    extra: str = "",
) -> str:
    payload = json.dumps(
        [image_id, list(command or []), sorted(env.items()), [list(m) for m in mounts], extra]
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


@dataclass(frozen=True)
class TenantContainer:
    """One named container, converged to image + command + env + mounts + labels."""

    key: str
    name: str
    image: str
    command: tuple[str, ...] | None
    env: Mapping[str, str] = field(repr=False)
    labels: Mapping[str, str]
    mounts: tuple[tuple[str, str, bool], ...] = ()
    # Hash of files the container reads through mounts: a changed file means replace.
    mounted_content_digest: str = ""
    restart_policy: Literal["unless-stopped"] | None = "unless-stopped"
    # (address, port) on the host that must accept TCP connections before apply returns,
    # so the next step (e.g. migrations needing Redis) does not race the start-up.
    user: str | None = None
    ready_on: tuple[str, int] | None = None
    # Or a probe: None once the container is ready, else why not yet (e.g. over a socket).
    ready_probe: Callable[[HostSession], str | None] | None = field(
        default=None, compare=False, repr=False
    )
    ready_deadline_seconds: float = 30.0
    limits: RuntimeLimits | None = None
    # "host" or "none"; ignored when ``joins`` is set.
    network: Literal["host", "none"] = "host"
    # The container whose network namespace this one joins. The engine pins the owner's
    # id at create time, so a new owner (a new namespace) means creating this one again:
    # the owner's desired configuration is part of this one's.
    joins: TenantContainer | None = None

    @property
    def network_mode(self) -> str:
        return f"container:{self.joins.name}" if self.joins else self.network

    def observe(self, session: HostSession) -> ContainerState:
        docker = session.docker()
        owner = self.joins
        return ContainerState(
            image_id=docker.image_id(self.image),
            container=docker.container(self.name),
            network_owner=docker.container(owner.name) if owner else None,
            network_owner_image_id=docker.image_id(owner.image) if owner else None,
        )

    def desired_hash(self, image_id: str, owner_image_id: str | None = None) -> str:
        extra = f"{self.mounted_content_digest}|user={self.user}"
        if self.limits is not None:  # older containers without limits are replaced once
            extra += f"|limits={self.limits}"
        if self.network_mode != "host":  # host-network containers are replaced once
            extra += f"|network={self.network_mode}"
        if self.joins is not None:
            extra += f"@{self.joins.desired_hash(owner_image_id or '')}"
        return config_hash(image_id, self.command, self.env, self.mounts, extra)

    def plan(self, current: ContainerState) -> list[Step]:
        if current.image_id is None:
            raise StepFailed(
                f"{self.key}: image {self.image} is not present on the host "
                "(no registry is configured: load or build it there first)",
                image=self.image,
            )
        want = self.desired_hash(current.image_id, current.network_owner_image_id)
        found = current.container
        if found is None:
            return [
                Step(
                    self.key,
                    Verb.CREATE,
                    f"create container {self.name} from {self.image}",
                    (
                        FieldChange("container", None, self.name),
                        FieldChange("image", None, self.image),
                    ),
                    detail={"config_hash": want},
                )
            ]
        have = found.labels.get(CONFIG_HASH_LABEL)
        if have != want:
            changes = [FieldChange("config", have, want)]
            if found.image_id != current.image_id:
                changes.append(FieldChange("image", found.image, self.image))
            return [
                Step(
                    self.key,
                    Verb.REPLACE,
                    f"replace container {self.name} (configuration changed)",
                    tuple(changes),
                    detail={"config_hash": want},
                )
            ]
        if not found.running or found.status != "running":  # e.g. "restarting": crash loop
            return [
                Step(
                    self.key,
                    Verb.UPDATE,
                    f"start container {self.name}",
                    (FieldChange("state", found.status, "running"),),
                    detail={"config_hash": want},
                )
            ]
        owner = current.network_owner
        if self.joins is not None and owner is None:
            return [
                Step(
                    self.key,
                    Verb.REPLACE,
                    f"replace container {self.name} (its network namespace's owner "
                    f"{self.joins.name} is created again)",
                    (FieldChange("network", found.network_mode[:22], self.joins.name),),
                    detail={"config_hash": want},
                )
            ]
        if owner is not None and found.network_mode != f"container:{owner.id}":
            return [
                Step(
                    self.key,
                    Verb.REPLACE,
                    f"replace container {self.name} (its network namespace's owner "
                    f"{owner.name} was created again)",
                    (FieldChange("network", found.network_mode[:22], owner.name),),
                    detail={"config_hash": want},
                )
            ]
        if owner is not None and started_key(owner.started_at) > started_key(found.started_at):
            # The namespace owner started again since: this container is left in the old,
            # empty namespace until it starts again too.
            return [
                Step(
                    self.key,
                    Verb.UPDATE,
                    f"restart container {self.name} (its network namespace was renewed)",
                    (FieldChange("network", "stale", owner.name),),
                    detail={"config_hash": want},
                )
            ]
        return [noop(self.key, f"container {self.name} running, up to date")]

    def apply(self, session: HostSession, step: Step) -> None:
        from omni.hosts.docker import ContainerSpec

        docker = session.docker()
        image_id = docker.image_id(self.image)
        if image_id is None:
            raise StepFailed(f"image {self.image} is not present on the host")
        existing = docker.container(self.name)
        if existing is not None:
            docker.remove(self.name, force=True)
        owner_image_id = docker.image_id(self.joins.image) if self.joins else None
        labels = {**self.labels,
                  CONFIG_HASH_LABEL: self.desired_hash(image_id, owner_image_id)}
        docker.create_and_start(
            ContainerSpec(
                name=self.name,
                image=self.image,
                command=list(self.command) if self.command is not None else None,
                env=dict(self.env),
                labels=labels,
                network_mode=self.network_mode,
                restart_policy=self.restart_policy,
                mounts=self.mounts,
                user=self.user,
                limits=self.limits,
            )
        )
        if self.ready_on is not None:
            wait_accepting(session, self.name, *self.ready_on, self.ready_deadline_seconds)
        if self.ready_probe is not None:
            wait_ready(session, self.name, self.ready_probe, self.ready_deadline_seconds)


def started_key(stamp: str) -> str:
    """An engine's RFC 3339 UTC ``StartedAt`` (nanoseconds, trailing zeros trimmed) made
    comparable as a string: the fraction padded to nine digits."""
    head, _, fraction = stamp.rstrip("Z").partition(".")
    return f"{head}.{fraction.ljust(9, '0')}"


def wait_ready(
    session: HostSession,
    container: str,
    probe: Callable[[HostSession], str | None],
    deadline_seconds: float,
) -> None:
    """Wait until ``probe`` answers None; raises ``StepFailed`` with the container's last
    log lines and the probe's last reason after ``deadline_seconds``."""
    deadline = time.monotonic() + deadline_seconds
    while (reason := probe(session)) is not None:
        if time.monotonic() >= deadline:
            logs = session.docker().logs(container, tail=5).decode("utf-8", "replace")
            raise StepFailed(
                f"container {container} was not ready within {deadline_seconds:g}s "
                f"({reason}); last logs: " + " | ".join(logs.strip().splitlines()),
            )
        time.sleep(0.2)


def wait_accepting(
    session: HostSession, container: str, address: str, port: int, deadline_seconds: float
) -> None:
    """Wait until ``address:port`` on the host accepts TCP connections; raises
    ``StepFailed`` with the container's last log lines after ``deadline_seconds``."""
    deadline = time.monotonic() + deadline_seconds
    while True:
        try:
            session.transport.open_tcp(address, port, timeout=2.0).close()
            return
        except OSError as exc:
            reason = str(exc) or type(exc).__name__
        except StepFailed as exc:
            reason = exc.message
        if time.monotonic() >= deadline:
            logs = session.docker().logs(container, tail=5).decode("utf-8", "replace")
            raise StepFailed(
                f"container {container} did not accept connections on {address}:{port} "
                f"within {deadline_seconds:g}s ({reason}); last logs: "
                + " | ".join(logs.strip().splitlines()),
            )
        time.sleep(0.2)
