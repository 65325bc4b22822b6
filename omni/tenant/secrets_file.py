"""The tenant's secrets file as a resource (key ``tenant.secrets``).

Like a ``ManagedFile`` of ``secrets.to_json()`` (0600), except that the admin fields
(``omni.tenant.secrets.ADMIN_FIELDS``) are kept as found on the host: the ``medusa.admin``
resource owns them and writes them during apply, so they are neither drift nor something
this resource may reset. Diffs show every value masked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from omni.engine.step import Step
from omni.resources.files import FileState, ManagedFile
from omni.tenant.secrets import ADMIN_FIELDS, TenantSecrets

if TYPE_CHECKING:
    from omni.hosts.session import HostSession


def admin_fields_on_host(content: bytes | None) -> dict[str, str | None]:
    """The admin fields of the file as found (all None when absent or unreadable)."""
    if content is not None:
        try:
            return TenantSecrets.from_json(content).admin_fields()
        except (ValueError, KeyError, TypeError):
            pass
    return dict.fromkeys(ADMIN_FIELDS)


@dataclass(frozen=True)
class SecretsFile:
    path: str
    secrets: TenantSecrets = field(repr=False)
    key: str = "tenant.secrets"

    def desired(self, current: FileState) -> ManagedFile:
        """The file to converge to, given what is on the host now. Pure."""
        wanted = self.secrets.with_admin(**admin_fields_on_host(current.content))
        return ManagedFile(
            key=self.key,
            path=self.path,
            content=wanted.to_json(),
            mode=0o600,
            display=wanted.masked().to_json().decode(),
        )

    def observe(self, session: HostSession) -> FileState:
        return self.desired(FileState(None)).observe(session)

    def plan(self, current: FileState) -> list[Step]:
        return self.desired(current).plan(current)

    def apply(self, session: HostSession, step: Step) -> None:
        self.desired(self.observe(session)).apply(session, step)
