"""How use cases get a host session (injected in tests, SSH/local by default)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from omni.inventory.loader import Inventory

if TYPE_CHECKING:
    from omni.hosts.session import HostSession

SessionOpener = Callable[[Inventory, str], "HostSession"]


def open_host_session(
    inventory: Inventory, name: str, opener: SessionOpener | None = None
) -> HostSession:
    """A session to host ``name``; opened lazily (nothing connects until first use)."""
    if opener is not None:
        return opener(inventory, name)
    from omni.hosts.session import HostSession

    return HostSession(inventory.host(name))
