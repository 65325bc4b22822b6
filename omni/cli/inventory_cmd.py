"""``omni inventory ...``: commands about the inventory files themselves."""

# No `from __future__ import annotations`: typer reads these signatures on every run, and
# string annotations would cost it two evals each, half of building the command tree.
import typer
from rich.console import Console

from omni.cli.context import CliContext
from omni.output.result import Result

app = typer.Typer(no_args_is_help=True, help="Check the inventory (hosts.yaml, tenants/).")


def _view(result: Result, out: Console) -> None:
    data = result.data
    if result.ok:
        hosts, tenants = data["hosts"], data["tenants"]
        out.print(
            f"OK: {data['path']}: {len(hosts)} host{'s' if len(hosts) != 1 else ''} "
            f"({', '.join(hosts) or 'none'}), {len(tenants)} tenant"
            f"{'s' if len(tenants) != 1 else ''}",
            soft_wrap=True,
        )


@app.command("check")
def check(ctx: typer.Context) -> None:
    """Validate every inventory file and the cross-file rules; touches no host.

    Prints OK with counts, or every problem (one line each on stderr) and exits 2.
    """
    from omni.usecases.inventory_check import inventory_check

    cli = CliContext.of(ctx)
    cli.render(inventory_check(cli.inventory_path), _view)
