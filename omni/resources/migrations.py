"""Medusa's database migrations, run in a one-off container of the tenant's image.

Migrations run when the image differs from the one they last ran for (recorded in a
marker file on the host after a successful run), so a converged tenant plans no run.
The marker's first line is that image id; a database created from a template database
(see ``omni.resources.templates``) is recorded the same way, with a second line naming the
template, and a database still to be created from one plans no run at all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from omni.engine.step import FieldChange, Step, Verb, noop
from omni.errors import StepFailed

if TYPE_CHECKING:
    from omni.hosts.session import HostSession
    from omni.resources.templates import TemplateRecipe

MIGRATION_TIMEOUT_SECONDS = 600.0
_LOG_LINES_IN_ERROR = 8


@dataclass(frozen=True)
class MigrationState:
    image_id: str | None
    migrated_image_id: str | None
    # True when the tenant's database does not exist yet and will be created from this
    # image's template database (which carries the migrations): nothing to run then.
    database_from_template: bool = False


def read_marker(raw: bytes | None) -> str | None:
    """The image id a marker file records (its first line); None for no marker."""
    if not raw:
        return None
    lines = raw.decode("utf-8", "replace").strip().splitlines()
    return lines[0].strip() if lines and lines[0].strip() else None


def marker_content(image_id: str, template: str | None = None) -> bytes:
    """A marker recording that ``image_id``'s migrations are applied (``template``: the
    template database they came with)."""
    text = image_id + "\n"
    if template:
        text += f"from-template {template}\n"
    return text.encode()


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
    # The tenant's database and the recipe of its template, when a database that does not
    # exist yet is to be created from a template database (``postgres.template_databases``).
    database: str | None = None
    template: TemplateRecipe | None = None

    def observe(self, session: HostSession) -> MigrationState:
        from omni.resources.postgres import database_exists

        migrated = read_marker(session.transport.read_file(self.marker_path))
        image_id = session.docker().image_id(self.image)
        pending = (
            self.template is not None
            and self.database is not None
            and image_id is not None
            and migrated != image_id
            and not database_exists(session, self.database)
        )
        return MigrationState(image_id, migrated, database_from_template=pending)

    def plan(self, current: MigrationState) -> list[Step]:
        if not self.command:
            return [noop(self.key, f"no migrations: no migrate command for {self.image}")]
        if current.image_id is None:
            raise StepFailed(f"{self.key}: image {self.image} is not present on the host")
        if current.migrated_image_id == current.image_id:
            return [noop(self.key, f"migrations already ran for {self.image}")]
        if current.database_from_template and self.template is not None:
            template = self.template.name(current.image_id)
            return [noop(self.key, f"migrations of {self.image} come with template database "
                                   f"{template} (the database is created from it)")]
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
        if not self.command:  # a plain app (``--force`` still plans nothing to run)
            return
        image_id = self.run(session)
        session.transport.write_file(self.marker_path, marker_content(image_id), mode=0o600)

    def run(self, session: HostSession) -> str:
        """Run the migrations container to completion; return the image id it ran.

        Writes no marker. Raises ``StepFailed`` when the image is missing, an earlier run's
        container is still running, or the migrations exit non-zero (last log lines,
        redacted).
        """
        from omni.hosts.docker import ContainerSpec

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
        return image_id


def _short(image_id: str | None) -> str | None:
    return image_id.removeprefix("sha256:")[:12] if image_id else None
