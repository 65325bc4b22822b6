"""Text from a remote host (nginx errors, container logs) is printed as text, never read as
rich markup: square brackets must not crash the human view (issue: exit 70)."""

from __future__ import annotations

import io

from rich.console import Console

from omni.engine.step import FieldChange, Step, Verb
from omni.output.render import print_steps, simple_table

REMOTE = "nginx: [emerg] unknown directive [/x] in /etc/nginx/sites/omni-a.conf:3 [bold]"


def _console() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, width=200, color_system=None), buffer


def test_step_tables_print_brackets_verbatim() -> None:
    console, buffer = _console()
    step = Step("nginx.vhost", Verb.UPDATE, REMOTE, (FieldChange("x", "[/a]", "[b]"),))
    print_steps([step], console)
    text = buffer.getvalue()
    assert "[emerg]" in text and "[/x]" in text and "[bold]" in text and "[/a]" in text


def test_simple_tables_print_brackets_verbatim() -> None:
    console, buffer = _console()
    console.print(simple_table(("tenant", "detail"), [("acme", REMOTE)]))
    assert "[/x]" in buffer.getvalue() and "[emerg]" in buffer.getvalue()
