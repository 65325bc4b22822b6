"""``omni history [SLUG]``: what omni did, merged from every host's audit log."""

# No `from __future__ import annotations`: typer reads these signatures on every run, and
# string annotations would cost it two evals each, half of building the command tree.
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from omni.cli.context import CliContext
from omni.output.render import simple_table
from omni.output.result import Result


def _view(result: Result, out: Console) -> None:
    rows = [
        (
            Text(str(e.get("when", ""))),
            Text(str(e.get("host", ""))),
            Text(str(e.get("who", ""))),
            Text(str(e.get("command", ""))),
            Text(", ".join(str(t) for t in e.get("tenants") or []) or "-"),
            Text(str(e.get("result", "")),
                 style="green" if e.get("result") == "success" else "bold red"),
            Text(f"{float(e.get('seconds') or 0):.1f}s"),
        )
        for e in result.data.get("entries", [])
    ]
    out.print(simple_table(
        ("when", "host", "who", "command", "tenants", "result", "seconds"), rows
    ))
    shown, total = len(rows), result.data.get("total", len(rows))
    if total > shown:
        out.print(Text(f"the last {shown} of {total} entries; --limit N shows more"))


def history(
    ctx: typer.Context,
    slug: Annotated[
        str | None,
        typer.Argument(help="Only entries about this tenant.", show_default=False),
    ] = None,
    host: Annotated[
        str | None, typer.Option("--host", help="Only this host's log.", show_default=False)
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", help="Show the last N entries.", metavar="N")
    ] = 50,
) -> None:
    """What omni changed, who ran it and how it ended: every host's audit log, newest
    last. A host that cannot be read is a warning; exit 5 only if none could be read."""
    from omni.usecases.history import HistoryRequest
    from omni.usecases.history import history as run

    cli = CliContext.of(ctx)
    result = run(HistoryRequest(slug, host, limit), cli.inventory_path,
                 sessions=cli.session_options())
    for warning in result.data.get("warnings", []):
        sys.stderr.write(f"warning: {warning}\n")
    sys.stderr.flush()
    cli.render(result, _view)
