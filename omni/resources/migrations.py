"""Medusa's database migrations, run in a one-off container of the tenant's image.

Migrations run when the image differs from the one they last ran for (recorded in a
marker file on the host after a successful run), so a converged tenant plans no run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from omni.engine.step import FieldChange, Step, Verb, noop
from omni.errors import StepFailed

if TYPE_CHECKING:
    from omni.hosts.session import HostSession

MIGRATION_TIMEOUT_SECONDS = 600.0
_LOG_LINES_IN_ERROR = 8


@dataclass(frozen=True)
class MigrationState:
    image_id: str | None
    migrated_image_id: str | None


@dataclass(frozen=True)
class Migrations:
    container_name: str
    image: str
    command: tuple[str, ...]
    env: Mapping[str, str] = field(repr=False)
    labels: Mapping[str, str]
    marker_path: str
    redact: Callable[[str], str]
    key: str = "medusa.migrations"
    network_mode: str = "host"  # the tenant's namespace: "container:<its gateway>"

    def observe(self, session: HostSession) -> MigrationState:
        raw = session.transport.read_file(self.marker_path)
        return MigrationState(
            image_id=session.docker().image_id(self.image),
            migrated_image_id=raw.decode().strip() if raw else None,
        )

    def plan(self, current: MigrationState) -> list[Step]:
        if not self.command:
            return [noop(self.key, f"no migrations: no migrate command for {self.image}")]
        if current.image_id is None:
            raise StepFailed(f"{self.key}: image {self.image} is not present on the host")
        if current.migrated_image_id == current.image_id:
            return [noop(self.key, f"migrations already ran for {self.image}")]
        return [
            Step(
                self.key,
                Verb.RUN,
                f"run `{' '.join(self.command)}` in a one-off {self.image} container",
                (
                    FieldChange(
                        "migrated_image",
                        _short(current.migrated_image_id),
                        _short(current.image_id),
                    ),
                ),
            )
        ]

    def apply(self, session: HostSession, step: Step) -> None:
        from omni.hosts.docker import ContainerSpec

        if not self.command:  # a plain app (``--force`` still plans nothing to run)
            return
        docker = session.docker()
        image_id = docker.image_id(self.image)
        if image_id is None:
            raise StepFailed(f"image {self.image} is not present on the host")
        leftover = docker.container(self.container_name)
        if leftover is not None and leftover.running:
            # A run that died (or lost its lock) left it migrating: never kill a migration
            # while it writes; the next run finds it finished.
            raise StepFailed(
                f"migrations from an earlier run are still running in container "
                f"{self.container_name} on host {docker.host}; run again once it has exited",
                container=self.container_name,
            )
        if leftover is not None:  # exited, left by a killed run
            docker.remove(self.container_name, force=True)
        exit_code, logs = docker.run_once(
            ContainerSpec(
                name=self.container_name,
                image=self.image,
                command=list(self.command),
                env=dict(self.env),
                labels=dict(self.labels),
                network_mode=self.network_mode,
                restart_policy=None,
            ),
            timeout=MIGRATION_TIMEOUT_SECONDS,
        )
        if exit_code != 0:
            tail = logs.decode("utf-8", "replace").strip().splitlines()[-_LOG_LINES_IN_ERROR:]
            raise StepFailed(
                self.redact(f"migrations exited {exit_code}: " + " | ".join(tail)),
                exit_status=exit_code,
            )
        session.transport.write_file(self.marker_path, image_id.encode() + b"\n", mode=0o600)


def _short(image_id: str | None) -> str | None:
    return image_id.removeprefix("sha256:")[:12] if image_id else None
