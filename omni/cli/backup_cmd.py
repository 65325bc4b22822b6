"""Backup commands: ``omni backup [run] SLUG...|--all``, ``omni backup list SLUG``,
``omni backup verify SLUG...|--all``, ``omni backup restore SLUG --yes``.

``omni backup SLUG`` is ``omni backup run SLUG`` (a tenant named like a sub-command is
backed up with ``omni backup run NAME``). Each command parses, calls one use case
(:mod:`omni.usecases.backup`) and renders its result.
"""

# No `from __future__ import annotations`: typer reads these signatures on every run, and
# string annotations would cost it two evals each, half of building the command tree.
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperGroup

from omni.cli.context import CliContext
from omni.cli.fleet_cmd import (
    AllOpt,
    ParallelOpt,
    SlugsArg,
    WaitOpt,
    fleet_table,
    progress_for,
)
from omni.output.render import simple_table
from omni.output.result import Result


class _RunByDefault(TyperGroup):
    """``omni backup ARGS`` runs ``omni backup run ARGS`` unless ARGS start with a
    sub-command or help."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=_RunByDefault, no_args_is_help=True,
    help="Offsite backups with restic: `omni backup SLUG...|--all`, then list, verify, "
    "restore.",
)


@app.command("run")
def run(
    ctx: typer.Context,
    slugs: SlugsArg = None,
    every: AllOpt = False,
    parallel: ParallelOpt = None,
    wait: WaitOpt = 0.0,
) -> None:
    """Back up tenants into their host's restic repository (pg_dump streamed, row counts
    recorded, read back), then apply retention. Failures do not stop the others; exit 3
    if any failed."""
    from omni.usecases.backup import BackupRequest, backup_tenants

    cli = CliContext.of(ctx)
    result = backup_tenants(BackupRequest(tuple(slugs or ()), every, parallel, wait),
                            cli.inventory_path, progress=progress_for(cli),
                            audit=cli.audit(), sessions=cli.session_options())
    cli.render(result, lambda result, out: fleet_table(
        result, out, [("snapshot", "snapshot"), ("size", "bytes")]))


@app.command("list")
def list_(
    ctx: typer.Context,
    slug: Annotated[str, typer.Argument(help="The tenant.", show_default=False)],
) -> None:
    """The tenant's backups in its repository: snapshot, time, size, release, image."""
    from omni.usecases.backup import list_backups

    cli = CliContext.of(ctx)
    result = list_backups(slug, cli.inventory_path, sessions=cli.session_options())

    def view(result: Result, out: Console) -> None:
        rows: list[Any] = [
            (s["snapshot"], s["time"][:19].replace("T", " "), s["size_text"],
             s.get("release") or "-", s.get("image") or "-")
            for s in result.data.get("snapshots", [])
        ]
        out.print(simple_table(("snapshot", "time (UTC)", "size", "release", "image"), rows))
        out.print(Text(f"{len(rows)} backup(s) of {result.data.get('tenant')} in "
                       f"{result.data.get('repository')}"))

    cli.render(result, view)


@app.command("verify")
def verify(
    ctx: typer.Context,
    slugs: SlugsArg = None,
    every: AllOpt = False,
    parallel: ParallelOpt = None,
    read_data_subset: Annotated[
        float, typer.Option("--read-data-subset", help="Percent of the repository's data "
                            "that `restic check` reads and verifies.")
    ] = 10.0,
) -> None:
    """Restore each tenant's latest backup into a scratch database on its host and compare
    every table's row count with the record; `restic check` each repository. Exit 1 if
    any verification failed. Meant to run monthly."""
    from omni.usecases.backup import VerifyRequest, verify_backups

    cli = CliContext.of(ctx)
    result = verify_backups(VerifyRequest(tuple(slugs or ()), every, parallel,
                                          read_data_subset),
                            cli.inventory_path, progress=progress_for(cli),
                            sessions=cli.session_options())

    def view(result: Result, out: Console) -> None:
        fleet_table(result, out, [("snapshot", "snapshot"), ("rows", "rows")])
        for repo in result.data.get("repositories", []):
            out.print(Text(f"repository of {repo['host']}: {repo['detail']}",
                           style="" if repo["ok"] else "bold red"))

    cli.render(result, view)


@app.command("restore")
def restore(
    ctx: typer.Context,
    slug: Annotated[str, typer.Argument(help="The tenant.", show_default=False)],
    snapshot: Annotated[
        str | None, typer.Option("--snapshot", help="Snapshot id (default: the latest).",
                                 show_default=False)
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: this replaces the live "
                                      "database (the old one is kept, renamed).")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say which snapshot; change "
                                          "nothing.")] = False,
    expect_plan: Annotated[
        str | None, typer.Option("--expect-plan", help="Refuse to restore unless a fresh "
                                 "dry run's plan fingerprint is this one.",
                                 show_default=False)] = None,
    wait: WaitOpt = 0.0,
) -> None:
    """Restore a backup as the tenant's database: into a new database, then swapped in;
    the replaced database is kept under tenant_<slug>_r<epoch>. Then the health gate."""
    from omni.usecases.backup import RestoreRequest, restore_backup

    cli = CliContext.of(ctx)
    result = restore_backup(RestoreRequest(slug, snapshot, yes, dry_run, wait,
                                           expect_plan or None),
                            cli.inventory_path, audit=cli.audit(),
                            sessions=cli.session_options())

    def view(result: Result, out: Console) -> None:
        data = result.data
        head = (f"snapshot {data.get('snapshot')} of {slug}: taken {data.get('time')}, "
                f"{data.get('age_hours')} h ago, {data.get('size')} bytes, "
                f"release {data.get('release')}")
        out.print(Text(head))
        if data.get("dry_run"):
            out.print(Text(f"would {data.get('would')}"))
            out.print(f"dry run: plan {data.get('plan_fingerprint')}; nothing was changed")
        elif result.ok:
            out.print(Text(f"restored into {data.get('database')}; the replaced database "
                           f"is kept as {data.get('replaced')}; healthy"))

    cli.render(result, view)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="backup")
    root.command("restore", help="Same as `omni backup restore`.")(restore)
