"""``omni plan``: the fleet's dry run (parse, call :mod:`omni.usecases.plan`, render)."""

# No `from __future__ import annotations`: typer reads these signatures on every run, and
# string annotations would cost it two evals each, half of building the command tree.
import sys
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.text import Text

from omni.cli.context import CliContext
from omni.cli.fleet_cmd import HostOpt, SlugsArg, fleet_table, progress_for
from omni.output.render import print_errors, print_steps
from omni.output.result import Result

Format = Literal["table", "json", "markdown"]


def plan(
    ctx: typer.Context,
    slugs: SlugsArg = None,
    host: HostOpt = None,
    output_format: Annotated[
        str,
        typer.Option("--format", help="table, json (the envelope, as --json) or markdown "
                     "(a pull-request comment; with --json it is data.markdown)."),
    ] = "table",
    expect_plan: Annotated[
        str | None,
        typer.Option("--expect-plan", help="Fail (exit 2) unless the fleet fingerprint is "
                     "this one (the reviewed plan).", show_default=False),
    ] = None,
) -> None:
    """The fleet's dry run, read-only, secrets masked: per tenant the plan `tenant create
    --dry-run` would make (missing tenants, drifted files, images, certificates due), what
    no tenant file claims on the hosts, and one fleet fingerprint. Exit 0 planned, 3 a
    tenant could not be planned, 5 a host unreachable."""
    from omni.errors import InvalidInput
    from omni.output.plan_markdown import render_markdown
    from omni.usecases.plan import PlanRequest, plan_fleet

    cli = CliContext.of(ctx)
    if output_format not in ("table", "json", "markdown"):
        raise InvalidInput(f"--format: must be table, json or markdown (got {output_format!r})",
                           field="format")
    if output_format == "json":
        cli.json = True
    request = PlanRequest(tuple(slugs or ()), host, expect_plan or None)
    result = plan_fleet(request, cli.inventory_path, progress=progress_for(cli),
                        sessions=cli.session_options())
    if output_format == "markdown":
        text = render_markdown(result.data, result.errors)
        if cli.json:
            result.data["markdown"] = text
        else:
            sys.stdout.write(text)
            sys.stdout.flush()
            print_errors(result, sys.stderr)
            if not result.ok:
                raise typer.Exit(int(result.exit_code))
            return
    cli.render(result, _table)


def _table(result: Result, out: Console) -> None:
    fleet_table(result, out, [("state", "state"), ("changes", "changes"),
                              ("fingerprint", "plan_fingerprint")])
    for row in result.data.get("tenants", []):
        if row.get("changes"):
            out.print(Text(f"{row['tenant']}@{row['host']}:", style="bold"))
            from omni.engine.step import FieldChange, Step, Verb

            print_steps([
                Step(s["resource"], Verb(s["verb"]), s["summary"],
                     tuple(FieldChange(**c) for c in s.get("changes", [])), s.get("diff"))
                for s in row.get("steps", [])
            ], out)
    for host in result.data.get("unclaimed", []):
        if host.get("error"):
            out.print(Text(f"{host['host']}: not scanned: {host['error'].get('message')}"))
        for c in host.get("containers", []):
            out.print(Text(f"{host['host']}: container {c['name']} (omni.tenant={c['tenant']}) "
                           "is claimed by no tenant file", style="yellow"))
        for db in host.get("databases", []):
            out.print(Text(f"{host['host']}: database {db} is claimed by no tenant file",
                           style="yellow"))
    fingerprint = result.data.get("fleet_fingerprint")
    out.print(Text(f"fleet fingerprint: {fingerprint or 'none (a tenant could not be planned)'}"))


def register(app: typer.Typer) -> None:
    app.command("plan")(plan)
