"""The root ``omni`` command: global options, sub-command registration, the error edge.

This is the only place that catches exceptions. Contract of :func:`run`:
- :class:`omni.errors.OmniError` -> one line ``error[code]: message`` on stderr, exit with
  its ``exit_code`` (with ``--json``, the error envelope on stdout as well);
- pydantic ``ValidationError`` from input -> the same, as ``invalid_input`` (exit 2);
- usage errors from typer/click -> ``invalid_input`` (exit 2);
- anything else -> ``error[internal]`` (exit 70); tracebacks only with ``OMNI_DEBUG=1``.

Sub-commands live in their own modules (``omni/cli/*_cmd.py``) and are added in
:func:`build_app`; the CLI imports no heavy library (paramiko, psycopg, docker) itself, and
``omni --help`` not even pydantic or yaml (tests/test_cli_errors.py).
"""

from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeGuard

import typer

from omni.cli import (
    backup_cmd,
    fleet_cmd,
    history_cmd,
    hosts_cmd,
    inventory_cmd,
    plan_cmd,
    release_cmd,
    tenant_cmd,
)
from omni.cli.context import CliContext, RunState, make_consoles
from omni.errors import ExitCode, InvalidInput, OmniError
from omni.output.render import error_line, write_json
from omni.output.result import error_envelope
from omni.settings import DEFAULTS, load_settings

if TYPE_CHECKING:
    from pydantic import ValidationError


class InternalError(OmniError):
    """An unexpected exception: a bug in omni (exit 70)."""

    code = "internal"
    exit_code = ExitCode.INTERNAL


def _root(
    ctx: typer.Context,
    inventory: Annotated[
        Path | None,
        typer.Option(
            "--inventory",
            "-i",
            help="Inventory directory (default: $OMNI_INVENTORY, else ./inventory).",
            show_default=False,
        ),
    ] = None,
    json_output: Annotated[
        bool,
        typer.Option("--json", help="Print exactly one JSON envelope on stdout."),
    ] = False,
    verbose: Annotated[
        int,
        typer.Option("--verbose", "-v", count=True, help="More detail on stderr (-vv: debug)."),
    ] = 0,
) -> None:
    """omni: provision and deploy tenants of the multi-tenant Medusa platform."""
    state = ctx.obj
    assert isinstance(state, RunState)
    settings = state.settings
    out, err = make_consoles(settings)
    state.cli = CliContext(
        settings=settings,
        inventory_path=inventory if inventory is not None else settings.inventory,
        json=json_output or settings.json_output,
        verbose=verbose,
        out=out,
        err=err,
        state=state,
    )
    if verbose or settings.debug:
        logging.basicConfig(
            stream=sys.stderr,
            level=logging.DEBUG if verbose > 1 or settings.debug else logging.INFO,
            format="%(levelname)s %(name)s: %(message)s",
        )


def build_app() -> typer.Typer:
    app = typer.Typer(
        name="omni",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.callback()(_root)
    app.add_typer(inventory_cmd.app, name="inventory")
    app.add_typer(hosts_cmd.app, name="hosts")
    app.add_typer(tenant_cmd.app, name="tenant")
    # The name the platform's runbooks use.
    app.command("create-tenant", help="Same as `omni tenant create`.")(tenant_cmd.create)
    fleet_cmd.register(app)
    app.command("history")(history_cmd.history)
    release_cmd.register(app)
    backup_cmd.register(app)
    plan_cmd.register(app)
    return app


def _usage_message(exc: BaseException) -> str | None:
    """The message of a typer/click usage error, or None if ``exc`` is not one.

    Duck-typed because typer vendors click in recent versions and re-uses it in older ones.
    """
    module = type(exc).__module__.split(".")[0]
    fmt = getattr(exc, "format_message", None)
    if module in {"typer", "click"} and callable(fmt) and hasattr(exc, "exit_code"):
        return str(fmt())
    return None


def _wants_json(state: RunState) -> bool:
    if state.cli is not None:
        return state.cli.json
    # Parsing failed before the root callback ran: fall back to a plain look at argv.
    return state.settings.json_output or "--json" in state.argv


def _fail(state: RunState, error: OmniError) -> int:
    sys.stdout.flush()
    if _wants_json(state) and not state.emitted:
        write_json(error_envelope(state.command, error), sys.stdout)
        state.emitted = True
    sys.stderr.write(error_line(error.code, error.message) + "\n")
    sys.stderr.flush()
    return int(error.exit_code)


def run(argv: list[str] | None = None) -> int:
    """Run omni with ``argv`` (default: ``sys.argv[1:]``) and return the exit status."""
    args = _global_flags_first(list(sys.argv[1:] if argv is None else argv))
    try:
        settings = load_settings()
    except Exception as err:
        if not _is_validation_error(err):
            raise
        state = RunState(argv=args, settings=DEFAULTS)
        return _fail(state, InvalidInput(f"settings (OMNI_* / .env): {_describe(err)}"))
    state = RunState(argv=args, settings=settings)
    command = typer.main.get_command(build_app())
    try:
        status = command.main(args=args, prog_name="omni", standalone_mode=False, obj=state)
        return status if isinstance(status, int) else 0
    except OmniError as err:
        _debug_traceback(state)
        return _fail(state, err)
    except typer.Abort:
        sys.stderr.write(error_line("aborted", "aborted by the user") + "\n")
        return 130
    except Exception as err:
        if _is_validation_error(err):
            _debug_traceback(state)
            return _fail(state, InvalidInput(_describe(err)))
        if type(err).__name__ == "NoArgsIsHelpError":
            # Bare `omni` or `omni hosts`: typer printed the help while raising this.
            return int(ExitCode.INVALID_INPUT)
        usage = _usage_message(err)
        if usage is not None:
            return _fail(state, InvalidInput(usage))
        _debug_traceback(state)
        hint = "" if state.settings.debug else "; OMNI_DEBUG=1 shows the traceback"
        return _fail(
            state, InternalError(f"{type(err).__name__}: {err} (a bug in omni{hint})")
        )


def _global_flags_first(args: list[str]) -> list[str]:
    """Accept ``--json`` anywhere before ``--`` (``omni tenant create x --json`` as in the
    runbooks), by moving it in front of the sub-command where typer expects it."""
    end = args.index("--") if "--" in args else len(args)
    if "--json" not in args[:end]:
        return args
    return ["--json", *(a for i, a in enumerate(args) if not (i < end and a == "--json"))]


def _is_validation_error(err: BaseException) -> TypeGuard[ValidationError]:
    """Whether ``err`` is pydantic's ``ValidationError``, without importing pydantic (a run
    that never imported it cannot have raised one)."""
    core = sys.modules.get("pydantic_core")
    return core is not None and isinstance(err, core.ValidationError)


def _describe(err: ValidationError) -> str:
    from omni.inventory.loader import describe_validation_error

    return describe_validation_error(err)


def _debug_traceback(state: RunState) -> None:
    """Print the traceback to stderr, only when OMNI_DEBUG=1."""
    if state.settings.debug:
        traceback.print_exc(file=sys.stderr)


def main() -> None:
    """Console-script entry point (``omni = omni.cli.app:main``)."""
    sys.exit(run())
