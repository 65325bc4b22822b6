"""Release commands: ``omni deploy``, ``omni rollback``, ``omni releases``."""

# No `from __future__ import annotations`: typer reads these signatures on every run, and
# string annotations would cost it two evals each, half of building the command tree.
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from omni.cli.context import CliContext
from omni.cli.fleet_cmd import (
    AllOpt,
    DryRunOpt,
    ExpectPlanOpt,
    KeepGoingOpt,
    ParallelOpt,
    SlugsArg,
    WaitOpt,
    fleet_table,
)
from omni.cli.fleet_cmd import progress_for as _progress
from omni.output.render import simple_table
from omni.output.result import Result


def _who() -> str:
    import os

    from omni.actor import actor

    return actor(os.environ)


def deploy(
    ctx: typer.Context,
    slugs: SlugsArg = None,
    every: AllOpt = False,
    image: Annotated[str, typer.Option("--image", help="The image to release.")] = "",
    parallel: ParallelOpt = None,
    keep_going: KeepGoingOpt = False,
    dry_run: DryRunOpt = False,
    expect_plan: Annotated[
        str | None, typer.Option("--expect-plan", help="Refuse unless the dry run's plan "
                                 "fingerprint is this.")] = None,
    wait: WaitOpt = 0.0,
) -> None:
    """Zero-downtime deploy: verified dump, migrations, new release healthy beside the old
    one, nginx switched (tested, proven live), old one drained and removed."""
    from omni.usecases.deploy import DeployRequest
    from omni.usecases.deploy import deploy as run

    cli = CliContext.of(ctx)
    request = DeployRequest(tuple(slugs or ()), every, image, parallel, keep_going, dry_run,
                            expect_plan, wait, _who())
    result = run(request, cli.inventory_path, progress=_progress(cli), audit=cli.audit(),
                 sessions=cli.session_options())

    def view(result: Result, out: Console) -> None:
        fleet_table(result, out, [("release", "release"), ("dump", "dump")])
        if result.data.get("dry_run"):
            for row in result.data.get("tenants", []):
                if row.get("vhost_diff"):
                    out.print(Text(f"--- {row['tenant']}: vhost\n{row['vhost_diff']}"))
            out.print(f"dry run: plan {result.data.get('plan_fingerprint')}; nothing changed")

    cli.render(result, view)


def rollback(
    ctx: typer.Context,
    slug: Annotated[str, typer.Argument(help="Tenant slug.")],
    to: Annotated[str | None, typer.Option("--to", help="Release id to go back to "
                                           "(default: the previous one).")] = None,
    restore_db: Annotated[
        bool | None,
        typer.Option("--restore-db/--no-restore-db", help="Also restore the database from "
                     "the dump taken before the release being undone.", show_default=False),
    ] = None,
    dry_run: DryRunOpt = False,
    expect_plan: ExpectPlanOpt = None,
    wait: WaitOpt = 0.0,
) -> None:
    """Back to the previous release (or --to RELEASE) through the same health-gated switch."""
    from omni.usecases.deploy import RollbackRequest
    from omni.usecases.deploy import rollback as run

    cli = CliContext.of(ctx)
    result = run(RollbackRequest(slug, to, restore_db, dry_run, wait, _who(),
                                 expect_plan or None),
                 cli.inventory_path, progress=_progress(cli), audit=cli.audit(),
                 sessions=cli.session_options())

    def view(result: Result, out: Console) -> None:
        fleet_table(result, out, [("release", "release")])
        if result.data.get("dry_run"):
            out.print(f"dry run: plan {result.data.get('plan_fingerprint')}; nothing changed")

    cli.render(result, view)


def releases(ctx: typer.Context, slug: Annotated[str, typer.Argument(help="Tenant slug.")]
             ) -> None:
    """The tenant's release ledger: every deploy and rollback, oldest first."""
    from omni.usecases.deploy import list_releases

    cli = CliContext.of(ctx)

    def view(result: Result, out: Console) -> None:
        current = result.data.get("current")
        rows = [
            (("* " if r["release"] == current else "  ") + r["release"], r["kind"],
             Text(r["status"]), r["image"], r["when"][:19], r["who"],
             "yes" if r["migrated"] else "-", r["dump"] or "-")
            for r in result.data["releases"]
        ]
        out.print(simple_table(("release", "kind", "status", "image", "when", "who",
                                "migrated", "dump"), rows))

    cli.render(list_releases(slug, cli.inventory_path), view)


def register(app: typer.Typer) -> None:
    app.command("deploy")(deploy)
    app.command("rollback")(rollback)
    app.command("releases")(releases)
