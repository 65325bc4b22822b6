"""``omni plan --format markdown``: the fleet plan as a compact pull-request comment.

A summary table (one row per tenant), then one collapsible ``<details>`` block per tenant
with changes (its steps and masked diffs), then what no tenant file claims and the errors.
Pure: it reads only the result's envelope, whose values are already masked. The comment is
kept under GitHub's 65536-character limit by cutting diffs first.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

MARKER = "<!-- omni-plan -->"  # lets a workflow find and update its own comment
MAX_CHARS = 60_000
MAX_DIFF_LINES = 200

_STATE = {"in_sync": "in sync", "changes": "changes", "missing": "**missing**"}


def _cell(value: object) -> str:
    """A table cell: one line, no pipe breaking the table, no HTML."""
    text = " ".join(str(value).split())
    return (text.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;")
            .replace(">", "&gt;")) or "-"


def _fence(text: str, lang: str = "") -> str:
    """A code block whose fence no line of ``text`` can close."""
    longest = max((len(run) for run in re.findall("`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{lang}\n{text.rstrip()}\n{fence}"


def _diff(diff: str) -> str:
    lines = diff.splitlines()
    if len(lines) > MAX_DIFF_LINES:
        lines = [*lines[:MAX_DIFF_LINES], f"... {len(lines) - MAX_DIFF_LINES} more line(s)"]
    return "\n".join(lines)


def _tenant_details(row: Mapping[str, Any], with_diffs: bool) -> str:
    out = [f"<details><summary><code>{_cell(row['tenant'])}</code> on "
           f"<code>{_cell(row['host'])}</code>: {_cell(row.get('detail', ''))}</summary>", ""]
    for step in row.get("steps", []):
        out.append(f"- `{step['verb']}` `{step['resource']}`: {_cell(step['summary'])}")
        for change in step.get("changes", []):
            out.append(f"  - {_cell(change['field'])}: {_cell(change['before'])} → "
                       f"{_cell(change['after'])}")
    if with_diffs:
        for step in row.get("steps", []):
            if step.get("diff"):
                out += ["", f"`{step['resource']}`:", "", _fence(_diff(step["diff"]), "diff")]
    out += ["", "</details>"]
    return "\n".join(out)


def render_markdown(data: Mapping[str, Any], errors: Sequence[Mapping[str, Any]] = ()) -> str:
    """The comment for a plan result's ``data`` and ``errors`` (see omni.usecases.plan)."""
    for with_diffs in (True, False):
        text = _render(data, errors, with_diffs)
        if len(text) <= MAX_CHARS:
            return text
    return text[:MAX_CHARS] + "\n\n… (cut: run `omni plan` for the whole plan)\n"


def _render(data: Mapping[str, Any], errors: Sequence[Mapping[str, Any]],
            with_diffs: bool) -> str:
    rows = list(data.get("tenants", []))
    states = data.get("states", {})
    fingerprint = data.get("fleet_fingerprint")
    out = [MARKER, "### omni plan", ""]
    out.append(
        f"Fleet fingerprint: `{fingerprint}`" if fingerprint else
        "Fleet fingerprint: **none** (a tenant could not be planned: nothing to approve)")
    out.append("")
    out.append(f"{len(rows)} tenant(s): {states.get('in_sync', 0)} in sync, "
               f"{states.get('changes', 0)} with changes, {states.get('missing', 0)} missing"
               + (f", {len(rows) - sum(states.values())} not planned"
                  if len(rows) > sum(states.values()) else ""))
    out += ["", "| tenant | host | state | changes | image | files | certificate | fingerprint |",
            "|---|---|---|---:|---|---|---|---|"]
    for row in rows:
        if row.get("status") != "ok":
            out.append(f"| {_cell(row['tenant'])} | {_cell(row['host'])} | "
                       f"**{_cell(row['status'])}** | - | - | - | - | - |")
            continue
        images = ", ".join(f"{i['before']} → {i['after']}" for i in row.get("images", []))
        files = ", ".join(f["resource"] for f in row.get("files", []))
        out.append(
            f"| {_cell(row['tenant'])} | {_cell(row['host'])} | "
            f"{_STATE.get(row.get('state', ''), _cell(row.get('state')))} | "
            f"{row.get('changes', 0)} | {_cell(images)} | {_cell(files)} | "
            f"{_cell('due' if row.get('certificate_due') else '')} | "
            f"`{_cell(row.get('plan_fingerprint'))}` |")
    details = [_tenant_details(r, with_diffs) for r in rows
               if r.get("status") == "ok" and r.get("changes")]
    if details:
        out += ["", *details]
    unclaimed = [h for h in data.get("unclaimed", [])
                 if h.get("containers") or h.get("databases") or h.get("error")]
    if unclaimed:
        out += ["", "#### Not claimed by any tenant file", ""]
        for host in unclaimed:
            if host.get("error"):
                out.append(f"- `{_cell(host['host'])}`: not scanned: "
                           f"{_cell(host['error'].get('message', ''))}")
            for c in host.get("containers", []):
                out.append(f"- `{_cell(host['host'])}`: container `{_cell(c['name'])}` "
                           f"(omni.tenant={_cell(c['tenant'])}, {_cell(c['image'])})")
            for db in host.get("databases", []):
                out.append(f"- `{_cell(host['host'])}`: database `{_cell(db)}`")
    if errors:
        out += ["", "#### Errors", ""]
        out += [f"- `{_cell(e.get('code', 'error'))}`: {_cell(e.get('message', ''))}"
                for e in errors]
    return "\n".join(out) + "\n"
