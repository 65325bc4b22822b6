"""Step-by-step progress on stderr for people (silent with --json on a non-TTY)."""

from __future__ import annotations

import time

from rich.console import Console

from omni.engine.step import Step


class ConsoleProgress:
    """One line per step: started, then ok/FAIL with its duration."""

    def __init__(self, err: Console, *, enabled: bool = True) -> None:
        self._err = err
        self._enabled = enabled
        self._started: dict[str, float] = {}

    def step_started(self, step: Step) -> None:
        self._started[step.resource] = time.monotonic()
        if self._enabled:
            self._err.print(f"[cyan]->[/] {step.resource}: {step.summary}", highlight=False)

    def step_finished(self, step: Step, error: str | None) -> None:
        if not self._enabled:
            return
        seconds = time.monotonic() - self._started.pop(step.resource, time.monotonic())
        if error is None:
            self._err.print(f"   [green]ok[/] {step.resource} ({seconds:.1f}s)", highlight=False)
        else:
            self._err.print(
                f"   [bold red]FAIL[/] {step.resource} ({seconds:.1f}s)", highlight=False
            )
