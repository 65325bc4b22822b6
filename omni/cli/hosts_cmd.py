"""``omni hosts ...``: commands about the servers."""

# No `from __future__ import annotations`: typer reads these signatures on every run, and
# string annotations would cost it two evals each, half of building the command tree.
from typing import Annotated

import typer
from rich.console import Console

from omni.cli.context import CliContext
from omni.output.render import ok_text, simple_table
from omni.output.result import Result

app = typer.Typer(no_args_is_help=True, help="Check the servers in hosts.yaml.")


def _view(result: Result, out: Console) -> None:
    rows = []
    for host in result.data.get("hosts", []):
        for row in host["checks"]:
            label = {"ok": "ok", "fail": "FAIL", "skip": "skipped"}[row["status"]]
            rows.append((host["name"], row["check"], ok_text(row["status"] == "ok", label),
                         row["detail"]))
    out.print(simple_table(("host", "check", "ok", "detail"), rows))


@app.command("check")
def check(
    ctx: typer.Context,
    hosts: Annotated[
        list[str] | None,
        typer.Argument(help="Host names from hosts.yaml (default: all).", show_default=False),
    ] = None,
) -> None:
    """Per host: SSH reachable with the pinned key, Docker, `nginx -t`, Postgres, free disk,
    ACME directory. Read-only. Exits 1 when any check fails."""
    from omni.usecases.hosts_check import hosts_check

    cli = CliContext.of(ctx)
    inventory = cli.inventory()
    cli.render(hosts_check(inventory, hosts or [], progress=cli.err.print), _view)
