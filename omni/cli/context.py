"""Per-run CLI state shared by every command: settings, consoles, the ``--json`` flag.

Commands get it with :meth:`CliContext.of` and end with :meth:`CliContext.render`, which
prints the result (envelope or human view) and exits with the result's exit code.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from omni.errors import ExitCode
from omni.output.render import print_errors, print_steps, write_json
from omni.output.result import Result
from omni.settings import Settings

if TYPE_CHECKING:
    from omni.audit import AuditContext
    from omni.inventory.loader import Inventory
    from omni.usecases.sessions import SessionOptions

HumanView = Callable[[Result, Console], None]


@dataclass
class RunState:
    """What the error edge in :func:`omni.cli.app.run` needs to know after a failure."""

    argv: list[str]
    settings: Settings
    cli: CliContext | None = None
    command: str = "omni"
    emitted: bool = False  # the envelope was already written to stdout


@dataclass
class CliContext:
    settings: Settings
    inventory_path: Path
    json: bool
    verbose: int
    out: Console  # stdout: data only
    err: Console  # stderr: progress and warnings for people
    state: RunState = field(repr=False)

    @classmethod
    def of(cls, ctx: typer.Context) -> CliContext:
        """The context the root callback built; also records the command's name."""
        state = ctx.find_root().obj
        assert isinstance(state, RunState)
        assert state.cli is not None
        state.command = " ".join(ctx.command_path.split()[1:]) or "omni"
        return state.cli

    @property
    def command(self) -> str:
        return self.state.command

    def inventory(self) -> Inventory:
        """The validated inventory (raises InventoryError: one line, exit 2)."""
        from omni.inventory.loader import load_inventory

        return load_inventory(self.inventory_path)

    def audit(self) -> AuditContext:
        """Who runs which command line, for the audit log (argv masked when recorded)."""
        import os

        from omni.actor import actor
        from omni.audit import AuditContext

        return AuditContext(argv=tuple(self.state.argv), actor=actor(os.environ))

    def session_options(self) -> SessionOptions:
        """Host session options from the settings: lock lease, holder named as the actor
        running ``omni ARGV``."""
        from omni.hosts.lock import LockOwner
        from omni.usecases.sessions import SessionOptions

        audit = self.audit()
        owner = LockOwner.of_process(who=audit.actor, argv=["omni", *audit.argv])
        return SessionOptions(self.settings.lock_lease_seconds, owner)

    def render(self, result: Result, human: HumanView | None = None) -> None:
        """Print ``result`` and exit with its exit code (raises ``typer.Exit`` if non-zero).

        ``--json``: exactly one envelope on stdout. Otherwise the command's human view (or
        the step table) on stdout; either way one ``error[code]: message`` line per error on
        stderr.
        """
        if self.json:
            write_json(result.envelope(), sys.stdout)
            self.state.emitted = True
        elif human is not None:
            human(result, self.out)
        else:
            print_steps(result.steps, self.out)
        print_errors(result, sys.stderr)
        if result.exit_code != ExitCode.OK:
            raise typer.Exit(int(result.exit_code))


def make_consoles(settings: Settings) -> tuple[Console, Console]:
    """stdout and stderr consoles honouring NO_COLOR / OMNI_COLOR and TTY detection."""
    color = settings.use_color
    kwargs: dict[str, object] = {}
    if color is False:
        kwargs["no_color"] = True
        kwargs["color_system"] = None
    elif color is True:
        kwargs["force_terminal"] = True
    out = Console(highlight=False, **kwargs)  # type: ignore[arg-type]
    err = Console(stderr=True, highlight=False, **kwargs)  # type: ignore[arg-type]
    if not out.is_terminal:
        out.width = max(out.width, 160)  # a pipe or a CI log: do not squeeze tables to 80
    return out, err
