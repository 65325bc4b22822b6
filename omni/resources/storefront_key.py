"""The storefront's publishable API key (resource key ``medusa.publishable_key``).

observe: the key recorded on the host (``omni.tenant.storefront``), and from the tenant
         database whether it is a live publishable key (not revoked or deleted) linked to
         the store's default sales channel. Before migrations ran, "database not ready".
plan:    pure: NOOP when the recorded key is live and linked; UPDATE when it is live but
         not linked; else CREATE.
apply:   once the app listens (its start-up seeds the store and default sales channel),
         ``medusa exec`` runs omni's onboarding script (``templates/medusa/onboard.js.j2``)
         in a one-off container: it finds the key titled ``KEY_TITLE`` or creates it with
         Medusa's own ``create-api-keys`` workflow, links it with
         ``link-sales-channels-to-api-key``, and prints its token, which is recorded.
         Idempotent: a run killed after Medusa made the key finds and records it next time.

A publishable key is public (every storefront page carries it), so steps may name it.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from omni.engine.step import FieldChange, Step, Verb, noop
from omni.errors import StepFailed
from omni.resources import medusa_db
from omni.resources.medusa_oneoff import ONBOARD_SCRIPT_IN_CONTAINER, MedusaOneOff
from omni.tenant.storefront import Storefront, read_storefront

if TYPE_CHECKING:
    from omni.hosts.session import HostSession

KEY = "medusa.publishable_key"
KEY_TITLE = "Storefront (omni)"
_TABLES = ("api_key", "store", "publishable_api_key_sales_channel")
_PRINTED = re.compile(r"^OMNI_PUBLISHABLE_KEY=(pk_[A-Za-z0-9]+) (\S+)", re.MULTILINE)


@dataclass(frozen=True)
class PublishableKeyState:
    database_ready: bool
    recorded: str | None = None  # the key recorded on the host
    live: bool = False  # recorded key is a live publishable key in the database
    linked: bool = False  # ... linked to the store's default sales channel


def short_key(token: str) -> str:
    return token[:12] + "…" if len(token) > 12 else token


def parse_printed_key(logs: str) -> Storefront | None:
    """The key and sales channel the onboarding script printed, or None."""
    match = _PRINTED.search(logs)
    return Storefront(match.group(1), match.group(2)) if match else None


def plan_publishable_key(current: PublishableKeyState) -> list[Step]:
    """The publishable key's steps. Pure: same inputs, same steps."""
    if current.recorded is not None and current.live and current.linked:
        return [
            noop(KEY, f"publishable key {short_key(current.recorded)} linked to the default "
                      "sales channel")
        ]
    if current.recorded is not None and current.live:
        return [
            Step(
                KEY,
                Verb.UPDATE,
                f"link publishable key {short_key(current.recorded)} to the default sales channel",
                (FieldChange("sales_channel", None, "default"),),
            )
        ]
    before = None if current.recorded is None else f"{short_key(current.recorded)} (gone)"
    ready = "" if current.database_ready else " (after migrations)"
    return [
        Step(
            KEY,
            Verb.CREATE,
            f"create the storefront's publishable key {KEY_TITLE!r}, linked to the default "
            f"sales channel{ready}",
            (FieldChange("publishable_key", before, "pk_… (new)"),),
        )
    ]


@dataclass(frozen=True)
class PublishableKey:
    db_name: str
    state_path: str  # storefront.json on the host
    oneoff: MedusaOneOff
    onboard_script: str
    onboard_script_path: str
    redact: Callable[[str], str]
    key: str = KEY

    def observe(self, session: HostSession) -> PublishableKeyState:
        found = read_storefront(session.transport, self.state_path)
        recorded = found.publishable_key if found is not None else None
        if not medusa_db.medusa_tables_ready(session, self.db_name, _TABLES):
            return PublishableKeyState(database_ready=False, recorded=recorded)
        if recorded is None:
            return PublishableKeyState(database_ready=True)
        facts = medusa_db.publishable_key_facts(session, self.db_name, recorded)
        return PublishableKeyState(True, recorded, facts.live, facts.linked)

    def plan(self, current: PublishableKeyState) -> list[Step]:
        return plan_publishable_key(current)

    def apply(self, session: HostSession, step: Step) -> None:
        transport = session.transport
        transport.run(["mkdir", "-p", "-m", "700", posixpath.dirname(self.onboard_script_path)])
        transport.write_file(self.onboard_script_path, self.onboard_script.encode(), mode=0o644)
        logs = self.oneoff.run(
            session,
            ["medusa", "exec", ONBOARD_SCRIPT_IN_CONTAINER],
            what="creating the publishable key (medusa exec)",
            redact=self.redact,
            extra_env={"OMNI_TASK": "storefront-key", "OMNI_KEY_TITLE": KEY_TITLE},
            mounts=((self.onboard_script_path, ONBOARD_SCRIPT_IN_CONTAINER, True),),
        )
        printed = parse_printed_key(logs)
        if printed is None:
            raise StepFailed("the onboarding script printed no publishable key")
        transport.write_file(self.state_path, printed.to_json(), mode=0o644)
