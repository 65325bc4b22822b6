"""``omni tenant ...`` (and ``omni create-tenant``): onboard and inspect tenants."""

# No `from __future__ import annotations`: typer reads these signatures on every run, and
# string annotations would cost it two evals each, half of building the command tree.
from typing import Annotated

import typer
from rich.console import Console

from omni.cli.context import CliContext
from omni.cli.progress import ConsoleProgress
from omni.output.render import print_steps, steps_table
from omni.output.result import Result

app = typer.Typer(
    no_args_is_help=True, help="Create, list, show and destroy tenants; hand out credentials."
)

SlugArg = Annotated[str, typer.Argument(help="Tenant slug (lowercase, e.g. acme-shop).")]
HostOpt = Annotated[str | None, typer.Option("--host", help="Host from hosts.yaml (new tenant).")]
DomainOpt = Annotated[
    list[str] | None,
    typer.Option("--domain", help="Domain to serve (repeatable; the first is primary)."),
]
ImageOpt = Annotated[str | None, typer.Option("--image", help="Medusa image (new tenant).")]
AdminEmailOpt = Annotated[
    str | None,
    typer.Option(
        "--admin-email", help="Shop owner's e-mail, invited as Medusa admin user (new tenant)."
    ),
]
DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Print the plan (diffs, before -> after); change nothing.")
]
ExpectPlanOpt = Annotated[
    str | None,
    typer.Option("--expect-plan", help="Refuse to apply unless the plan has this fingerprint."),
]
WaitOpt = Annotated[
    float,
    typer.Option(
        "--wait",
        min=0.0,
        metavar="SECONDS",
        help="Wait up to this long for the tenant's lock (default: fail at once, exit 4).",
    ),
]


def _create_view(result: Result, out: Console) -> None:
    data = result.data
    if data.get("dry_run") or not result.ok:
        print_steps(result.steps, out)  # the reviewable plan: table and diffs
    else:
        out.print(steps_table(result.steps))  # what was done; diffs were in the dry run
    fingerprint = data.get("plan_fingerprint", "")
    if data.get("dry_run"):
        verdict = "changes planned" if result.changed else "nothing to do"
        out.print(f"dry run: {verdict}; plan {fingerprint}; nothing was changed")
        return
    if result.ok:
        health = data.get("health", {})
        state = "changed" if result.changed else "already up to date"
        out.print(
            f"tenant [bold]{data.get('tenant')}[/] on {data.get('host')}: {state}; "
            f"{data.get('url')} healthy ({health.get('status')} in {health.get('seconds')}s)"
        )


def create(
    ctx: typer.Context,
    slug: SlugArg,
    host: HostOpt = None,
    domain: DomainOpt = None,
    image: ImageOpt = None,
    admin_email: AdminEmailOpt = None,
    dry_run: DryRunOpt = False,
    expect_plan: ExpectPlanOpt = None,
    wait: WaitOpt = 0.0,
) -> None:
    """Create or converge a tenant: database, Redis, migrations, app, certificate, vhost.

    Idempotent: re-running after any failure finishes the job; a converged tenant is a no-op.
    """
    from omni.usecases.tenant_create import CreateRequest, create_tenant

    cli = CliContext.of(ctx)
    request = CreateRequest(
        slug=slug,
        host=host,
        domains=tuple(domain or ()),
        image=image,
        admin_email=admin_email,
        dry_run=dry_run,
        expect_plan=expect_plan,
        wait_seconds=wait,
    )
    progress = ConsoleProgress(cli.err)
    result = create_tenant(request, cli.inventory_path, progress=progress, audit=cli.audit(),
                           sessions=cli.session_options())
    cli.render(result, _create_view)


app.command("create")(create)


@app.command("destroy")
def destroy(
    ctx: typer.Context,
    slug: SlugArg,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: this deletes the tenant.")] = False,
    dry_run: DryRunOpt = False,
    expect_plan: ExpectPlanOpt = None,
    wait: WaitOpt = 0.0,
) -> None:
    """Remove a tenant: final backup (offsite with restic when the host has `backup`, else
    a local pg_dump), then vhost, containers, cert, database, role."""
    from omni.usecases.tenant_destroy import DestroyRequest, destroy_tenant

    cli = CliContext.of(ctx)
    result = destroy_tenant(
        DestroyRequest(slug=slug, confirmed=yes, dry_run=dry_run, wait_seconds=wait,
                       expect_plan=expect_plan or None),
        cli.inventory_path,
        progress=ConsoleProgress(cli.err),
        audit=cli.audit(),
        sessions=cli.session_options(),
    )

    def view(result: Result, out: Console) -> None:
        print_steps(result.steps, out)
        if result.data.get("dry_run"):
            out.print(f"dry run: plan {result.data.get('plan_fingerprint')}; nothing was "
                      "changed")
        elif result.ok:
            final = result.data.get("final_backup") or result.data.get("dump")
            out.print(f"tenant {slug} destroyed; final backup: {final}")

    cli.render(result, view)


@app.command("list")
def list_(
    ctx: typer.Context,
    no_probe: Annotated[
        bool, typer.Option("--no-probe", help="Skip the live health/certificate probes.")
    ] = False,
) -> None:
    """Tenants with host, domains, image, port, health and certificate expiry."""
    from omni.output.render import simple_table
    from omni.usecases.tenant_list import list_tenants

    cli = CliContext.of(ctx)

    def view(result: Result, out: Console) -> None:
        rows = [
            (
                t["slug"],
                t["host"],
                ", ".join(t["domains"]),
                t["image"],
                str(t["app_port"] or "-"),
                str(t.get("health", "-")),
                str(t.get("certificate_expires") or "-"),
            )
            for t in result.data["tenants"]
        ]
        out.print(
            simple_table(
                ("slug", "host", "domains", "image", "port", "health", "cert expires"), rows
            )
        )

    cli.render(list_tenants(cli.inventory_path, probe=not no_probe), view)


@app.command("show")
def show(ctx: typer.Context, slug: SlugArg) -> None:
    """One tenant in detail: inventory, containers, health, certificate."""
    from omni.usecases.tenant_list import show_tenant

    cli = CliContext.of(ctx)

    def view(result: Result, out: Console) -> None:
        from omni.output.render import simple_table

        tenant = result.data["tenant"]
        rows = [(k, str(v)) for k, v in tenant.items() if k != "containers"]
        rows += [
            (f"container {c['component']}", f"{c['name']} {c['status']}")
            for c in tenant["containers"]
        ]
        out.print(simple_table(("field", "value"), rows))

    cli.render(show_tenant(cli.inventory_path, slug), view)


@app.command("credentials")
def credentials(ctx: typer.Context, slug: SlugArg) -> None:
    """The shop owner's admin invite link (or generated password), read from the host.

    The only command that prints them: keep its output private.
    """
    from omni.usecases.tenant_credentials import tenant_credentials

    cli = CliContext.of(ctx)

    def view(result: Result, out: Console) -> None:
        from omni.output.render import simple_table

        data = result.data
        rows = [(k, "-" if v is None else str(v)) for k, v in data.items() if k != "invite_url"]
        out.print(simple_table(("field", "value"), rows))
        if data.get("invite_url"):  # whole, on its own line: a table would cut it
            out.print(f"invite_url: {data['invite_url']}", markup=False, soft_wrap=True)
        if data.get("admin_user_exists"):
            out.print("the admin user exists: sign in at " + str(data.get("admin_url")))
        elif data.get("invite_url"):
            out.print("send the owner the invite_url; it expires at " + str(
                data.get("invite_expires_at")))

    cli.render(tenant_credentials(cli.inventory_path, slug), view)
