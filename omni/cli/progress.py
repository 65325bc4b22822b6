"""Step-by-step progress on stderr for people (silent with --json on a non-TTY)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, ClassVar

from rich.console import Console
from rich.text import Text

from omni.engine.step import Step

if TYPE_CHECKING:
    from omni.fleet.runner import TenantResult
    from omni.inventory.models import Tenant


class ConsoleProgress:
    """One line per step: started, then ok/FAIL with its duration."""

    def __init__(self, err: Console, *, enabled: bool = True) -> None:
        self._err = err
        self._enabled = enabled
        self._started: dict[str, float] = {}

    def step_started(self, step: Step) -> None:
        self._started[step.resource] = time.monotonic()
        if self._enabled:
            line = Text("-> ", style="cyan")
            line.append(f"{step.resource}: {step.summary}")
            self._err.print(line, highlight=False)

    def step_finished(self, step: Step, error: str | None) -> None:
        if not self._enabled:
            return
        seconds = time.monotonic() - self._started.pop(step.resource, time.monotonic())
        if error is None:
            line = Text("   ")
            line.append("ok", style="green")
            line.append(f" {step.resource} ({seconds:.1f}s)")
            self._err.print(line, highlight=False)
        else:
            line = Text("   ")
            line.append("FAIL", style="bold red")
            line.append(f" {step.resource} ({seconds:.1f}s)")
            self._err.print(line, highlight=False)


class FleetConsoleProgress:
    """One line per tenant as it finishes (``[3/13] ok acme@dev 2.1s ...``), on stderr.

    Remote text is printed as plain text, never read as rich markup.
    """

    _STYLE: ClassVar[dict[str, str]] = {
        "ok": "green", "warning": "yellow", "skipped": "dim", "not_run": "dim"
    }

    def __init__(self, err: Console, *, enabled: bool = True) -> None:
        self._err = err
        self._enabled = enabled

    def tenant_started(self, tenant: Tenant) -> None:
        return None

    def tenant_finished(self, result: TenantResult, done: int, total: int) -> None:
        if not self._enabled:
            return
        line = Text(f"[{done}/{total}] ")
        line.append(f"{result.status:<11}", style=self._STYLE.get(result.status, "bold red"))
        line.append(f" {result.slug}@{result.host} {result.seconds:.1f}s")
        if result.detail:
            line.append(f"  {result.detail}", style="dim")
        self._err.print(line, highlight=False, soft_wrap=True)
