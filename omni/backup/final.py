"""The final backup ``omni tenant destroy`` takes before it removes anything.

On a host with ``backup`` settings this replaces the local final dump: the repository must
open first (else nothing at all is touched), then the app is stopped so no write is lost
after the dump, the database is backed up into the offsite repository like ``omni backup``
does and read back (``pg_restore --list`` of what restic returns). If any of that fails
the app is started again and the step fails, so the destroy stops before removing a thing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from omni.backup import ops, restic
from omni.engine.step import FieldChange, Step, Verb, noop
from omni.errors import OmniError
from omni.resources.postgres import database_exists

if TYPE_CHECKING:
    from omni.hosts.session import HostSession
    from omni.inventory.models import Tenant


@dataclass(frozen=True)
class OffsiteFinalBackup:
    tenant: Tenant
    database: str
    app_container: str
    repository: str
    now: datetime
    key: str = "backup.final"
    # What apply did, for the use case's result (the dataclass itself stays frozen).
    taken: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def observe(self, session: HostSession) -> bool:
        return database_exists(session, self.database)

    def plan(self, current: bool) -> list[Step]:
        if not current:
            return [noop(self.key, f"database {self.database} already gone: nothing to "
                                   "back up")]
        return [Step(
            self.key, Verb.RUN,
            f"stop the app, back up {self.database} to {self.repository} and read it back",
            (FieldChange("backup", None, self.repository),),
        )]

    def apply(self, session: HostSession, step: Step) -> None:
        settings = restic.require_backup(session.host)
        ops.reachable(session.transport, settings)
        docker = session.docker()
        found = docker.container(self.app_container)
        was_running = found is not None and found.status == "running"
        if was_running:
            docker.stop(self.app_container)
        try:
            taken = ops.take_backup(session, self.tenant, self.database, now=self.now)
        except OmniError:
            if was_running:
                docker.restart(self.app_container)
            raise
        self.taken.update(taken.to_dict(), repository=self.repository)
