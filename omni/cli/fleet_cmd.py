"""Fleet commands: ``omni health-check``, ``omni migrate-all``, ``omni restart``,
``omni certs renew``. Each parses, calls one use case and renders its result."""

# No `from __future__ import annotations`: typer reads these signatures on every run, and
# string annotations would cost it two evals each, half of building the command tree.
from collections.abc import Sequence
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from omni.cli.context import CliContext
from omni.cli.progress import FleetConsoleProgress
from omni.output.render import simple_table
from omni.output.result import Result

SlugsArg = Annotated[
    list[str] | None,
    typer.Argument(help="Tenant slugs (default: every tenant).", show_default=False),
]
HostOpt = Annotated[
    str | None, typer.Option("--host", help="Only the tenants on this host.", show_default=False)
]
ParallelOpt = Annotated[
    int | None,
    typer.Option(
        "--parallel",
        help="Tenants at a time overall (default: the sum of the hosts' concurrency); "
        "never more than a host's concurrency on that host.",
        show_default=False,
    ),
]
KeepGoingOpt = Annotated[
    bool, typer.Option("--keep-going", help="Go on after a tenant fails (default: stop).")
]
AllOpt = Annotated[bool, typer.Option("--all", help="Every tenant in the inventory.")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Say what would run; change nothing.")]
ExpectPlanOpt = Annotated[
    str | None,
    typer.Option("--expect-plan", help="Refuse to apply unless a fresh dry run's plan "
                 "fingerprint (shown by --dry-run) is this one.", show_default=False),
]
WaitOpt = Annotated[
    float, typer.Option("--wait", help="Wait up to SECONDS for a tenant's lock held by "
                        "another run (default: fail at once, exit 4).", min=0.0)
]

_STATUS_STYLE = {
    "ok": "green", "pass": "green", "warning": "yellow", "warn": "yellow",
    "skipped": "dim", "not_run": "dim",
}


def _cell(status: str, label: str | None = None) -> Text:
    return Text(label or status, style=_STATUS_STYLE.get(status, "bold red"))


def progress_for(cli: CliContext) -> FleetConsoleProgress:
    return FleetConsoleProgress(cli.err, enabled=not (cli.json and not cli.err.is_terminal))


def _summary_line(result: Result, out: Console) -> None:
    counts = result.data.get("summary", {})
    text = ", ".join(f"{n} {status}" for status, n in counts.items()) or "no tenants"
    out.print(Text(f"{len(result.data.get('tenants', []))} tenant(s): {text}"))


def fleet_table(
    result: Result, out: Console, columns: Sequence[tuple[str, str]] = ()
) -> None:
    """tenant, host, result, duration, the command's own ``columns`` (title, key), detail."""
    rows = []
    for row in result.data.get("tenants", []):
        extra = [Text(str(row.get(key) or "-")) for _, key in columns]
        rows.append((
            row["tenant"], row["host"], _cell(row["status"]), f"{row['seconds']:.1f}s",
            *extra, Text(row.get("detail") or ""),
        ))
    titles = ("tenant", "host", "result", "duration", *(t for t, _ in columns), "detail")
    out.print(simple_table(titles, rows))
    _summary_line(result, out)


def health_check(
    ctx: typer.Context,
    slugs: SlugsArg = None,
    host: HostOpt = None,
) -> None:
    """Every check of every tenant: app, redis, database, upstream, https, certificate,
    config. Read-only. Exit 0 all pass (warnings allowed), 1 a check failed, 5 a host is
    unreachable."""
    from omni.usecases.health_check import HealthCheckRequest
    from omni.usecases.health_check import health_check as run

    cli = CliContext.of(ctx)
    result = run(HealthCheckRequest(tuple(slugs or ()), host), cli.inventory_path,
                 progress=progress_for(cli))

    def view(result: Result, out: Console) -> None:
        checks: list[str] = result.data.get("checks", [])
        rows = []
        for row in result.data.get("tenants", []):
            found = {c["check"]: c for c in row.get("checks", [])}
            cells = [
                _cell(found[name]["status"], "ok" if found[name]["status"] == "pass" else
                      found[name]["status"].upper())
                if name in found else _cell(row["status"], "-")
                for name in checks
            ]
            rows.append((row["tenant"], row["host"], *cells, f"{row['seconds']:.2f}s"))
        out.print(simple_table(("tenant", "host", *checks, "latency"), rows))
        for row in result.data.get("tenants", []):
            for check in row.get("checks", []):
                if check["status"] != "pass":
                    out.print(Text(f"{row['tenant']}: {check['check']} "
                                   f"{check['status'].upper()}: {check['detail']}"))
            if not row.get("checks") and row.get("detail"):
                out.print(Text(f"{row['tenant']}: {row['status']}: {row['detail']}"))
        _summary_line(result, out)

    cli.render(result, view)


def migrate_all(
    ctx: typer.Context,
    host: HostOpt = None,
    tenant: Annotated[
        list[str] | None,
        typer.Option("--tenant", help="Only this tenant (repeatable).", show_default=False),
    ] = None,
    parallel: ParallelOpt = None,
    dry_run: DryRunOpt = False,
    force: Annotated[
        bool, typer.Option("--force", help="Migrate even where already recorded for the image.")
    ] = False,
    expect_plan: ExpectPlanOpt = None,
    wait: WaitOpt = 0.0,
) -> None:
    """Medusa migrations for every tenant: verified pg_dump first, then `medusa db:migrate`
    in a one-off container, then the health gate. Failures do not stop the others; exit 3
    if any failed."""
    from omni.usecases.migrate_all import MigrateAllRequest
    from omni.usecases.migrate_all import migrate_all as run

    cli = CliContext.of(ctx)
    request = MigrateAllRequest(tuple(tenant or ()), host, parallel, dry_run, force, wait,
                                expect_plan or None)
    result = run(request, cli.inventory_path, progress=progress_for(cli), audit=cli.audit(),
                 sessions=cli.session_options())

    def view(result: Result, out: Console) -> None:
        fleet_table(result, out, [("dump", "dump")])
        if result.data.get("dry_run"):
            out.print(f"dry run: plan {result.data.get('plan_fingerprint')}; nothing was "
                      "changed")

    cli.render(result, view)


def restart(
    ctx: typer.Context,
    slugs: SlugsArg = None,
    every: AllOpt = False,
    service: Annotated[
        str, typer.Option("--service", help="app, redis or all.", show_default=True)
    ] = "app",
    parallel: ParallelOpt = None,
    keep_going: KeepGoingOpt = False,
    wait: WaitOpt = 0.0,
) -> None:
    """Restart tenants' containers; each tenant counts as done only once its health gate
    passes. --all rolls through the fleet and stops at the first failure."""
    from omni.errors import InvalidInput
    from omni.usecases.restart import RestartRequest
    from omni.usecases.restart import restart as run

    cli = CliContext.of(ctx)
    if service not in ("app", "redis", "all"):
        raise InvalidInput(f"--service: must be app, redis or all (got {service!r})",
                           field="service")
    request = RestartRequest(tuple(slugs or ()), every, service,  # type: ignore[arg-type]
                             parallel, keep_going, wait)
    result = run(request, cli.inventory_path, progress=progress_for(cli), audit=cli.audit(),
                 sessions=cli.session_options())
    cli.render(result, lambda result, out: fleet_table(result, out))


certs = typer.Typer(no_args_is_help=True, help="TLS certificates of the tenants.")


@certs.command("renew")
def certs_renew(
    ctx: typer.Context,
    slugs: SlugsArg = None,
    host: HostOpt = None,
    dry_run: DryRunOpt = False,
    expect_plan: ExpectPlanOpt = None,
    wait: WaitOpt = 0.0,
) -> None:
    """Renew the certificates inside their renewal window or not covering their domains;
    nginx reloads once per host, only if something changed. Daily from a schedule."""
    from omni.usecases.certs_renew import RenewRequest, renew_certificates

    cli = CliContext.of(ctx)
    result = renew_certificates(RenewRequest(tuple(slugs or ()), host, dry_run, wait,
                                             expect_plan or None),
                                cli.inventory_path, progress=progress_for(cli),
                                audit=cli.audit(), sessions=cli.session_options())

    def view(result: Result, out: Console) -> None:
        fleet_table(result, out)
        out.print(Text(str(result.data.get("verdict", ""))))
        if result.data.get("dry_run"):
            out.print(f"dry run: plan {result.data.get('plan_fingerprint')}; nothing changed")

    cli.render(result, view)


def register(app: typer.Typer) -> None:
    app.command("health-check")(health_check)
    app.command("migrate-all")(migrate_all)
    app.command("restart")(restart)
    app.add_typer(certs, name="certs")
