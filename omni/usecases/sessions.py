"""How use cases get a host session (injected in tests, SSH/local by default)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from omni.hosts.lock import DEFAULT_LEASE_SECONDS, LockOwner
from omni.inventory.loader import Inventory

if TYPE_CHECKING:
    from omni.hosts.session import HostSession, SessionPool
    from omni.inventory.models import Host

SessionOpener = Callable[[Inventory, str], "HostSession"]


@dataclass(frozen=True)
class SessionOptions:
    """How this run's host sessions hold locks; built by the shell from its settings.

    ``lock_lease_seconds``: a lock survives that long without a heartbeat
    (``OMNI_LOCK_LEASE_SECONDS``); ``lock_owner``: who holder files name (``None``: this
    process, see :meth:`omni.hosts.lock.LockOwner.of_process`).
    """

    lock_lease_seconds: float = DEFAULT_LEASE_SECONDS
    lock_owner: LockOwner | None = None

    def session(self, host: Host) -> HostSession:
        """A lazily-connecting session to ``host`` with these options."""
        from omni.hosts.session import HostSession

        return HostSession(
            host, lock_lease_seconds=self.lock_lease_seconds, lock_owner=self.lock_owner
        )

    def pool(self, hosts: Mapping[str, Host]) -> SessionPool:
        """One session per host (opened lazily) with these options."""
        from omni.hosts.session import SessionPool

        return SessionPool(
            hosts, lock_lease_seconds=self.lock_lease_seconds, lock_owner=self.lock_owner
        )


def open_host_session(
    inventory: Inventory,
    name: str,
    opener: SessionOpener | None = None,
    options: SessionOptions | None = None,
) -> HostSession:
    """A session to host ``name``; opened lazily (nothing connects until first use).
    ``opener`` (tests) wins over ``options``."""
    if opener is not None:
        return opener(inventory, name)
    return (options or SessionOptions()).session(inventory.host(name))
