"""Render a :class:`Result`: the JSON envelope (machines) or rich tables (people).

Contract: stdout carries data only (exactly one JSON object with ``--json``, else the
human view); every error line goes to stderr as ``error[code]: message``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

from rich.console import Console
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from omni.engine.step import Step, Verb
from omni.output.result import Result

_VERB_STYLE = {
    Verb.CREATE: "green",
    Verb.UPDATE: "yellow",
    Verb.REPLACE: "magenta",
    Verb.DELETE: "red",
    Verb.RUN: "cyan",
    Verb.RELOAD: "cyan",
    Verb.NOOP: "dim",
}


def write_json(envelope: dict[str, Any], out: TextIO) -> None:
    """Write one JSON object and a newline; ``default=str`` keeps paths/dates printable."""
    out.write(json.dumps(envelope, default=str, sort_keys=False) + "\n")
    out.flush()


def error_line(code: str, message: str) -> str:
    """The one-line error format. Newlines are folded so it stays one line."""
    flat = " ".join(message.split()) if "\n" in message or "\r" in message else message
    return f"error[{code}]: {flat}"


def print_errors(result: Result, err: TextIO) -> None:
    """Each error as one plain line (never rich: it would wrap long lines on a pipe)."""
    for error in result.errors:
        err.write(error_line(str(error.get("code", "error")), str(error.get("message", ""))))
        err.write("\n")
    err.flush()


def steps_table(steps: Sequence[Step], *, title: str | None = None) -> Table:
    """One row per step: resource, verb, summary and field changes (before -> after)."""
    table = Table(title=title, show_lines=False)
    table.add_column("resource")
    table.add_column("verb")
    table.add_column("summary")
    table.add_column("changes")
    for step in steps:
        changes = "\n".join(f"{c.field}: {c.before} -> {c.after}" for c in step.changes)
        table.add_row(
            Text(step.resource),
            Text(step.verb.value, style=_VERB_STYLE.get(step.verb, "")),
            Text(step.summary),  # may quote remote text: never read as markup
            Text(changes),
        )
    return table


def print_steps(steps: Sequence[Step], out: Console) -> None:
    """The plan as a table, then each step's unified diff (already secret-masked)."""
    if not steps:
        return
    out.print(steps_table(steps))
    for step in steps:
        if step.diff:
            out.print(Text(f"--- {step.resource}", style="bold"))
            out.print(Syntax(step.diff, "diff", theme="ansi_dark", background_color="default"))


def simple_table(
    columns: Sequence[str], rows: Iterable[Sequence[str | Text]], *, title: str | None = None
) -> Table:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        # Plain strings are data (slugs, remote output), never rich markup.
        table.add_row(*(Text(cell) if isinstance(cell, str) else cell for cell in row))
    return table


def ok_text(ok: bool, label: str | None = None) -> Text:
    """A coloured yes/no cell; the word carries the meaning when colour is off."""
    return Text(label or ("ok" if ok else "FAIL"), style="green" if ok else "bold red")
