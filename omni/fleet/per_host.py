"""A value a fleet run computes once per host, on the host's own session.

Some per-tenant work is cheaper asked of the host once for all its tenants (every app
container in one ``docker inspect``). The first worker on a host to ask builds it; the
others on that host wait for it. What building raised is raised to every asker, so each
tenant reports it (and a ``HostUnreachable`` still marks the host down).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from omni.hosts.session import HostSession

T = TypeVar("T")


class PerHost(Generic[T]):
    def __init__(self, build: Callable[[HostSession], T]) -> None:
        self._build = build
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._values: dict[str, T] = {}
        self._errors: dict[str, Exception] = {}

    def get(self, session: HostSession) -> T:
        with self._guard:
            lock = self._locks.setdefault(session.name, threading.Lock())
        with lock:
            if session.name not in self._values and session.name not in self._errors:
                try:
                    self._values[session.name] = self._build(session)
                except Exception as exc:
                    self._errors[session.name] = exc
        if session.name in self._errors:
            raise self._errors[session.name]
        return self._values[session.name]
