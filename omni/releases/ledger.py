"""The release ledger: every deploy and rollback of a tenant, kept on its host.

The one module that owns the format. File: ``<state_dir>/tenants/<slug>/releases.jsonl``,
mode 0600, append-only: one JSON object per line, never rewritten. A run appends a
``started`` event before it changes anything and a ``finished`` event (with ``result``)
after; a release whose run died half-way has only ``started`` and reads as
``interrupted`` until a later run appends its ``finished`` (``abandoned`` or
``completed``). Fields of ``started``: ``release`` (id), ``kind`` (deploy|rollback),
``image``, ``image_id`` (the content digest of the image on the host), ``previous_image``,
``previous_release``, ``config_fingerprint`` (digest of the app's configuration, secrets
never in clear), ``who``, ``when`` (UTC ISO). ``finished`` adds ``result``
(succeeded|failed|abandoned|completed), ``dump`` (the verified dump taken before the
release), ``migrated`` (whether migrations ran), ``schema_changed`` (the database schema
differs after them), ``restored`` (the run put the database back from its dump),
``detail``.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from omni.errors import StepFailed

if TYPE_CHECKING:
    from omni.inventory.models import Host
    from omni.transport.base import Transport

TERMINAL = ("succeeded", "failed", "abandoned", "completed")
_DETAIL_MAX = 1500  # characters of a finished event's detail (one line stays under 4 KiB)


def ledger_path(host: Host, slug: str) -> str:
    return f"{host.state_dir}/tenants/{slug}/releases.jsonl"


def new_release_id(now: datetime) -> str:
    return f"r{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(2)}"


@dataclass(frozen=True)
class Release:
    """One release folded from its events."""

    release: str
    kind: str
    image: str
    image_id: str
    when: str
    who: str
    status: str  # succeeded | failed | abandoned | completed | interrupted
    previous_image: str | None = None
    previous_release: str | None = None
    config_fingerprint: str = ""
    dump: str | None = None
    migrated: bool = False
    schema_changed: bool = False  # its migrations changed the schema (and it stayed so)
    restored: bool = False  # its run restored the database from its dump (undone)
    detail: str = ""
    finished: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def live_once(self) -> bool:
        """It served traffic at some point (a good rollback target)."""
        return self.status in ("succeeded", "completed")

    def to_dict(self) -> dict[str, Any]:
        return {
            "release": self.release, "kind": self.kind, "status": self.status,
            "image": self.image, "image_id": self.image_id, "when": self.when,
            "finished": self.finished, "who": self.who,
            "previous_image": self.previous_image, "previous_release": self.previous_release,
            "config_fingerprint": self.config_fingerprint, "dump": self.dump,
            "migrated": self.migrated, "schema_changed": self.schema_changed,
            "restored": self.restored, "detail": self.detail,
        }


def append(transport: Transport, host: Host, slug: str, event: dict[str, Any]) -> None:
    """Append one event line (0600, created under umask 077; one short ``O_APPEND`` write,
    so concurrent readers never see half a line)."""
    path = ledger_path(host, slug)
    event = dict(event)
    if len(str(event.get("detail", ""))) > _DETAIL_MAX:
        event["detail"] = str(event["detail"])[:_DETAIL_MAX] + "..."
    line = json.dumps(event, sort_keys=True, separators=(",", ":")) + "\n"
    if len(line.encode()) > 3800:
        raise StepFailed(f"ledger event for {slug} too long to append atomically")
    transport.run(["mkdir", "-p", "-m", "700", path.rsplit("/", 1)[0]])
    transport.run(
        ["sh", "-c", 'umask 077 && cat >> "$1"', "sh", path], stdin=line.encode(), timeout=30
    )


def read_events(transport: Transport, host: Host, slug: str) -> list[dict[str, Any]]:
    raw = transport.read_file(ledger_path(host, slug))
    events = []
    for line in (raw or b"").decode("utf-8", "replace").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue  # a torn last line of a host that crashed mid-write
        if isinstance(event, dict) and "release" in event:
            events.append(event)
    return events


def fold(events: list[dict[str, Any]]) -> list[Release]:
    """Releases in the order they started. Pure."""
    started: dict[str, dict[str, Any]] = {}
    finished: dict[str, dict[str, Any]] = {}
    for event in events:
        target = started if event.get("event") == "started" else finished
        target.setdefault(event["release"], {}).update(event)
    releases = []
    for release_id, start in started.items():
        end = finished.get(release_id, {})
        releases.append(Release(
            release=release_id,
            kind=str(start.get("kind", "deploy")),
            image=str(start.get("image", "")),
            image_id=str(start.get("image_id", "")),
            when=str(start.get("when", "")),
            who=str(start.get("who", "")),
            status=str(end.get("result", "interrupted")),
            previous_image=start.get("previous_image"),
            previous_release=start.get("previous_release"),
            config_fingerprint=str(start.get("config_fingerprint", "")),
            dump=end.get("dump") or start.get("dump"),
            migrated=bool(end.get("migrated", False)),
            # Older records did not measure the schema: take any migration as a change.
            schema_changed=bool(end.get("schema_changed", end.get("migrated", False))),
            restored=bool(end.get("restored", False)),
            detail=str(end.get("detail", "")),
            finished=end.get("when"),
        ))
    return releases


def releases(transport: Transport, host: Host, slug: str) -> list[Release]:
    return fold(read_events(transport, host, slug))


def schema_changes_since(history: list[Release], target: Release) -> list[Release]:
    """Releases after ``target`` whose migrations changed the schema and were not undone:
    going back to ``target`` needs the dump taken before the first of them."""
    since = history[history.index(target) + 1:]
    return [r for r in since if r.schema_changed and not r.restored]


def current(history: list[Release]) -> Release | None:
    """The release serving now: the last one that went live."""
    live = [r for r in history if r.live_once]
    return live[-1] if live else None
