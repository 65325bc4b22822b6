"""The :class:`Result` of a fleet command, from its per-tenant results."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from omni.errors import HostUnreachable, LockHeld, OmniError
from omni.fleet.runner import TenantResult, summary
from omni.output.result import Result


class _TenantError(OmniError):
    """One tenant's own error, named by tenant and host (after the summary errors)."""

    def __init__(self, result: TenantResult) -> None:
        error = dict(result.error or {})
        self.code = str(error.pop("code", "error"))
        message = str(error.pop("message", result.detail))
        super().__init__(f"{result.slug}@{result.host}: {message}", **error)


def fleet_result(
    command: str,
    results: Sequence[TenantResult],
    failure: type[OmniError],
    *,
    data: Mapping[str, Any] | None = None,
    unreachable_first: bool = False,
    changed: bool = False,
) -> Result:
    """Success when every tenant ended ok, warning or skipped; else a failure whose errors
    name the tenants: ``failure`` for failed or not-run ones, ``LockHeld`` (exit 4) for
    locked ones, ``HostUnreachable`` (exit 5) for unreachable ones. The first error sets
    the exit status: failures first, unless ``unreachable_first`` (read-only checks, where
    "could not look" outranks "looked and found a problem")."""
    body: dict[str, Any] = {
        **(data or {}),
        "tenants": [r.to_dict() for r in results],
        "summary": summary(results),
    }

    def named(statuses: set[str]) -> list[str]:
        return [f"{r.slug}@{r.host}" for r in results if r.status in statuses]

    errors: list[OmniError] = []
    failed = named({"failed"})
    if failed:
        errors.append(failure(f"{len(failed)} tenant(s) failed: {', '.join(failed)}",
                              tenants=failed))
    not_run = named({"not_run"})
    if not_run:
        errors.append(failure(f"{len(not_run)} tenant(s) not run after a failure: "
                              f"{', '.join(not_run)}", tenants=not_run))
    locked = named({"locked"})
    if locked:
        errors.append(LockHeld(f"{len(locked)} tenant(s) locked by another omni run: "
                               f"{', '.join(locked)}", tenants=locked))
    unreachable = named({"unreachable"})
    if unreachable:
        hosts = sorted({r.host for r in results if r.status == "unreachable"})
        error = HostUnreachable(
            f"host(s) {', '.join(hosts)} unreachable; {len(unreachable)} tenant(s) not "
            f"reached: {', '.join(unreachable)}", hosts=hosts, tenants=unreachable,
        )
        errors.insert(0, error) if unreachable_first else errors.append(error)
    errors += [_TenantError(r) for r in results if r.error and r.status != "unreachable"]
    if errors:
        return Result.failure(command, errors, data=body, changed=changed)
    return Result.success(command, data=body, changed=changed)
