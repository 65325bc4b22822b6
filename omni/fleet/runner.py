"""The fleet runner: one tenant loop for every fleet command.

health-check, migrate-all, restart, certs renew (and later deploy, backup) differ only in
what they do to one tenant. This module owns the rest, once:

- **scheduling**: at most ``parallel`` tenants at a time overall and never more than a
  host's ``concurrency`` on that host (``check_concurrency`` for a read-only run), in the
  order given;
- **sessions**: one :class:`~omni.hosts.session.HostSession` per host for the whole run,
  shared by every worker on that host (so one SSH connection per host);
- **locks**: with ``lock=True`` each tenant's work runs under its ``tenant-<slug>`` lock;
  a held lock is that tenant's result (``locked``), not a crash;
- **hosts that are down**: the first ``HostUnreachable`` on a host marks it down; its other
  tenants are reported ``unreachable`` without another try, other hosts go on;
- **stop-at-first or keep-going**: without ``keep_going``, the first tenant that does not
  end ``ok``/``warning``/``skipped`` stops new work; tenants never started are ``not_run``;
- **results**: one :class:`TenantResult` per tenant (status, detail, duration, data, error),
  in the order given, and progress events for the shell to draw.

The command's own work is a function ``(session, tenant) -> Outcome``; raising an
``OmniError`` is a ``failed`` result carrying it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from omni.errors import HostUnreachable, InvalidInput, LockHeld, OmniError

if TYPE_CHECKING:
    from omni.hosts.session import HostSession
    from omni.inventory.models import Host, Tenant

Status = Literal["ok", "warning", "skipped", "failed", "locked", "unreachable", "not_run"]
# Statuses that do not stop a roll (everything else does, unless keep_going).
GOOD: frozenset[str] = frozenset({"ok", "warning", "skipped"})


@dataclass(frozen=True)
class Outcome:
    """What a command's per-tenant work returns."""

    status: Status = "ok"
    detail: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)
    error: OmniError | None = None  # for a failed outcome that still reports data


@dataclass(frozen=True)
class TenantResult:
    slug: str
    host: str
    status: Status
    detail: str = ""
    seconds: float = 0.0
    data: Mapping[str, Any] = field(default_factory=dict)
    error: Mapping[str, Any] | None = None
    started: float = 0.0  # seconds after the run began that this tenant's work began

    def to_dict(self) -> dict[str, Any]:
        return {
            "tenant": self.slug,
            "host": self.host,
            "status": self.status,
            "detail": self.detail,
            "started": round(self.started, 2),
            "seconds": round(self.seconds, 2),
            **dict(self.data),
            "error": dict(self.error) if self.error else None,
        }


class FleetProgress(Protocol):
    def tenant_started(self, tenant: Tenant) -> None: ...
    def tenant_finished(self, result: TenantResult, done: int, total: int) -> None: ...


class NullFleetProgress:
    def tenant_started(self, tenant: Tenant) -> None:
        return None

    def tenant_finished(self, result: TenantResult, done: int, total: int) -> None:
        return None


class Sessions(Protocol):
    """One session per host for the run (:class:`omni.hosts.session.SessionPool`)."""

    def get(self, name: str) -> HostSession: ...


TenantWork = Callable[["HostSession", "Tenant"], Outcome]


@dataclass(frozen=True)
class FleetOptions:
    parallel: int | None = None  # None: the sum of the hosts' concurrency
    lock: bool = False  # hold each tenant's lock around its work (mutating commands)
    lock_wait_seconds: float = 0.0
    keep_going: bool = True
    purpose: str = ""  # the command, e.g. "restart": holder files say "<purpose> <slug>"
    read_only: bool = False  # only looks: each host's check_concurrency, not concurrency


def check_parallel(parallel: int | None) -> None:
    """``--parallel`` must be a positive whole number (raises ``InvalidInput``)."""
    if parallel is not None and parallel < 1:
        raise InvalidInput(f"--parallel: must be at least 1 (got {parallel})", field="parallel")


def run_fleet(
    tenants: Sequence[Tenant],
    hosts: Mapping[str, Host],
    work: TenantWork,
    sessions: Sessions,
    options: FleetOptions = FleetOptions(),
    progress: FleetProgress | None = None,
) -> list[TenantResult]:
    """Run ``work`` for every tenant; see the module docstring. Never raises for a
    tenant's failure: every tenant gets a result, in the order of ``tenants``."""
    check_parallel(options.parallel)
    return _Run(tenants, hosts, work, sessions, options, progress or NullFleetProgress()).go()


class _Run:
    def __init__(
        self,
        tenants: Sequence[Tenant],
        hosts: Mapping[str, Host],
        work: TenantWork,
        sessions: Sessions,
        options: FleetOptions,
        progress: FleetProgress,
    ) -> None:
        self.tenants = list(tenants)
        self.work = work
        self.sessions = sessions
        self.options = options
        self.progress = progress
        used = {t.host for t in self.tenants}
        self.limit = {
            h: hosts[h].check_concurrency if options.read_only else hosts[h].concurrency
            for h in used
        }
        self.parallel = options.parallel or sum(self.limit.values()) or 1
        self.results: dict[str, TenantResult] = {}
        self.down: dict[str, Mapping[str, Any]] = {}  # host -> the error that took it down
        self.running: dict[str, int] = dict.fromkeys(used, 0)
        self.stopped = False
        self.cond = threading.Condition()
        self.began = time.monotonic()

    def go(self) -> list[TenantResult]:
        pending = deque(self.tenants)
        with ThreadPoolExecutor(max_workers=max(1, self.parallel)) as pool, self.cond:
            while pending or sum(self.running.values()):
                if self.stopped:
                    while pending:
                        skipped = pending.popleft()
                        self._record(TenantResult(
                            skipped.slug, skipped.host, "not_run",
                            "not started: an earlier tenant failed (use --keep-going)",
                        ))
                chosen = self._next(pending)
                if chosen is None:
                    if sum(self.running.values()):
                        self.cond.wait()
                    continue
                pending.remove(chosen)
                self.running[chosen.host] += 1
                pool.submit(self._one, chosen)
        return [self.results[t.slug] for t in self.tenants]

    def _next(self, pending: deque[Tenant]) -> Tenant | None:
        """The first pending tenant whose host has a free slot, if a worker is free."""
        if sum(self.running.values()) >= self.parallel:
            return None
        for tenant in pending:
            if self.running[tenant.host] < self.limit[tenant.host]:
                return tenant
        return None

    def _record(self, result: TenantResult) -> None:
        """Keep ``result``; caller holds ``cond``."""
        self.results[result.slug] = result
        if result.status not in GOOD and not self.options.keep_going:
            self.stopped = True
        self.progress.tenant_finished(result, len(self.results), len(self.tenants))

    def _one(self, tenant: Tenant) -> None:
        started = time.monotonic()
        try:
            result = self._attempt(tenant)
        except BaseException as exc:  # a bug in a command's work must not hang the run
            result = TenantResult(
                tenant.slug, tenant.host, "failed", f"{type(exc).__name__}: {exc}",
                error={"code": "internal", "message": f"{type(exc).__name__}: {exc}"},
            )
        result = TenantResult(
            result.slug, result.host, result.status, result.detail,
            time.monotonic() - started, result.data, result.error, started - self.began,
        )
        with self.cond:
            self.running[tenant.host] -= 1
            self._record(result)
            self.cond.notify_all()

    def _attempt(self, tenant: Tenant) -> TenantResult:
        def result(status: Status, detail: str, error: OmniError | None = None,
                   data: Mapping[str, Any] | None = None) -> TenantResult:
            return TenantResult(
                tenant.slug, tenant.host, status, detail, data=data or {},
                error=error.to_dict() if error else None,
            )

        with self.cond:
            down = self.down.get(tenant.host)
        if down is not None:
            return result("unreachable", f"host {tenant.host} is unreachable: "
                          f"{down.get('message', '')}")
        self.progress.tenant_started(tenant)
        try:
            session = self.sessions.get(tenant.host)
            with self._lock(session, tenant):
                outcome = self.work(session, tenant)
        except HostUnreachable as exc:
            with self.cond:
                self.down.setdefault(tenant.host, exc.to_dict())
            return result("unreachable", exc.message, exc)
        except LockHeld as exc:
            return result("locked", exc.message, exc)
        except OmniError as exc:
            return result("failed", exc.message, exc)
        return result(outcome.status, outcome.detail, outcome.error, outcome.data)

    @contextmanager
    def _lock(self, session: HostSession, tenant: Tenant) -> Iterator[None]:
        if not self.options.lock:
            with nullcontext():
                yield
            return
        with session.lock(
            f"tenant-{tenant.slug}",
            wait_seconds=self.options.lock_wait_seconds,
            purpose=f"{self.options.purpose} {tenant.slug}".strip(),
        ):
            yield


def summary(results: Sequence[TenantResult]) -> dict[str, int]:
    """How many tenants ended in each status (only statuses that occurred)."""
    counts: dict[str, int] = {}
    for result in results:
        counts[result.status] = counts.get(result.status, 0) + 1
    return counts
