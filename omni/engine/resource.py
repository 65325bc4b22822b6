"""The resource contract the engine drives.

A resource knows one piece of a tenant (a role, a file, a container...). It can
``observe`` its current state (read-only), ``plan`` the steps from that state to the
desired one (a pure function of the observed state and the resource's own spec: no I/O),
and ``apply`` one of its planned steps (the only code that writes). No resource ever
checks a dry-run flag: a dry run is the engine stopping after ``plan``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:
    from omni.engine.step import Step
    from omni.hosts.session import HostSession


S = TypeVar("S")


class Resource(Protocol[S]):
    @property
    def key(self) -> str:
        """Stable name of the resource in plans, e.g. ``postgres.role``."""
        ...

    def observe(self, session: HostSession) -> S:
        """Read the current state from the host. Never writes. Tolerates missing prerequisites
        (e.g. a database that does not exist yet) by reporting absence."""
        ...

    def plan(self, current: S) -> list[Step]:
        """Steps from ``current`` to the desired state; empty or NOOP-only when converged."""
        ...

    def apply(self, session: HostSession, step: Step) -> None:
        """Carry out one step this resource planned. Raises ``StepFailed`` on failure."""
        ...
