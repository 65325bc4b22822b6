"""The tenant's Medusa admin user (resource key ``medusa.admin``).

observe: from the tenant database (admin connection): whether the admin user exists, and
         whether the invite omni holds (token in the tenant's 0600 secrets file) is still
         pending there, until when. Before migrations ran, "database not ready".
plan:    pure, on ``now``: NOOP when the user exists (the invite was accepted, or the user
         was made otherwise) or when the held invite is pending for more than
         ``REISSUE_MARGIN``; else CREATE (first invite) or UPDATE (re-issue an invite that
         expired or is about to: Medusa invites live 24 h).
apply:   once the app listens: retire pending invites for the e-mail (Medusa allows one
         per address, and one left by a killed run holds a token omni never saw), run
         ``medusa user -e EMAIL --invite`` in a one-off container, read the token from its
         log, look its expiry up in the database and store both in the secrets file (0600).
         If the image's CLI prints no invite token (it cannot invite), fall back to a
         generated password, stored first, then set through ``medusa exec`` with the
         password in the container's environment (never on a command line).

Steps hold the e-mail and times only: never a token or a password.
"""

from __future__ import annotations

import posixpath
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from omni.engine.step import FieldChange, Step, Verb, noop
from omni.errors import StepFailed
from omni.resources import medusa_db
from omni.resources.medusa_oneoff import ONBOARD_SCRIPT_IN_CONTAINER, MedusaOneOff
from omni.tenant.secrets import TenantSecrets

if TYPE_CHECKING:
    from omni.hosts.session import HostSession

KEY = "medusa.admin"
# Re-issue an invite once less than this is left of its 24 h (so: when older than ~23 h).
REISSUE_MARGIN = timedelta(hours=1)
_TABLES = ("user", "invite")
# Medusa 2.x logs "Invite token: <JWT>" (inside a JSON log line in production).
_INVITE_TOKEN = re.compile(r"Invite token: (eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)")
_ADMIN_USER_LINE = re.compile(r"^OMNI_ADMIN_USER=(\S+)", re.MULTILINE)


@dataclass(frozen=True)
class AdminUserState:
    database_ready: bool  # the tenant database exists and Medusa's tables are there
    user_exists: bool = False
    invite_held: bool = False  # the secrets file holds an invite token
    # expires_at of the pending invite whose token omni holds; None: no such invite
    held_invite_expires: datetime | None = None
    password_held: bool = False  # inviting was impossible; a generated password is stored


def parse_invite_token(logs: str) -> str | None:
    """The invite token in the output of ``medusa user --invite``, or None."""
    match = _INVITE_TOKEN.search(logs)
    return match.group(1) if match else None


def invite_url(public_url: str, token: str) -> str:
    """The link the shop owner opens: Medusa Admin's invite page (admin at ``/app``)."""
    return f"{public_url}/app/invite?token={token}"


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def plan_admin_user(current: AdminUserState, email: str, now: datetime) -> list[Step]:
    """The admin user's steps. Pure: same inputs, same steps."""
    if current.user_exists:
        return [noop(KEY, f"admin user {email} exists")]
    expires = current.held_invite_expires
    if expires is not None and expires - now > REISSUE_MARGIN:
        return [noop(KEY, f"invite for {email} pending until {_when(expires)}")]
    if current.password_held:
        return [
            Step(
                KEY,
                Verb.CREATE,
                f"create admin user {email} with its stored generated password",
                (FieldChange("admin_user", None, email),),
                detail={"method": "password"},
            )
        ]
    after = "new invite (valid 24h)"
    if expires is not None or current.invite_held:
        before = f"expires {_when(expires)}" if expires is not None else "no longer pending"
        return [
            Step(
                KEY,
                Verb.UPDATE,
                f"re-issue the admin invite for {email} (the last one {before})",
                (FieldChange("invite", before, after),),
                detail={"method": "invite"},
            )
        ]
    ready = "" if current.database_ready else " (after migrations)"
    return [
        Step(
            KEY,
            Verb.CREATE,
            f"invite {email} as admin user{ready}: `medusa user -e {email} --invite`",
            (FieldChange("admin_user", None, email), FieldChange("invite", None, after)),
            detail={"method": "invite"},
        )
    ]


@dataclass(frozen=True)
class AdminUser:
    email: str
    db_name: str
    secrets_path: str
    public_url: str
    oneoff: MedusaOneOff
    onboard_script: str  # rendered templates/medusa/onboard.js.j2 (no secret in it)
    onboard_script_path: str  # where it is written on the host (mounted read-only)
    now: datetime
    redact: Callable[[str], str]
    key: str = KEY

    def observe(self, session: HostSession) -> AdminUserState:
        held = self._read_secrets(session)
        if not medusa_db.medusa_tables_ready(session, self.db_name, _TABLES):
            return AdminUserState(database_ready=False, invite_held=bool(held.admin_invite_token))
        token = held.admin_invite_token
        return AdminUserState(
            database_ready=True,
            user_exists=medusa_db.user_exists(session, self.db_name, self.email),
            invite_held=token is not None,
            held_invite_expires=(
                medusa_db.pending_invite_expiry(session, self.db_name, self.email, token)
                if token
                else None
            ),
            password_held=held.admin_password is not None,
        )

    def plan(self, current: AdminUserState) -> list[Step]:
        return plan_admin_user(current, self.email, self.now)

    def apply(self, session: HostSession, step: Step) -> None:
        if step.detail.get("method") != "password":
            self.oneoff.wait_for_app(session)
            medusa_db.retire_pending_invites(session, self.db_name, self.email)
            logs = self.oneoff.run(
                session,
                ["medusa", "user", "-e", self.email, "--invite"],
                what=f"`medusa user -e {self.email} --invite`",
                redact=self.redact,
            )
            token = parse_invite_token(logs)
            if token is not None:
                self._store_invite(session, token)
                return
            # This image's CLI cannot invite: a generated password is the fallback.
        self._create_with_password(session)

    # -- helpers ------------------------------------------------------------------------

    def _read_secrets(self, session: HostSession) -> TenantSecrets:
        raw = session.transport.read_file(self.secrets_path)
        if raw is None:
            return TenantSecrets("", "", "", "")  # before tenant.secrets wrote it: nothing held
        try:
            return TenantSecrets.from_json(raw)
        except (ValueError, KeyError, TypeError):
            raise StepFailed(f"{self.secrets_path} is not a valid secrets file") from None

    def _write_admin(self, session: HostSession, **admin: str | None) -> None:
        raw = session.transport.read_file(self.secrets_path)
        if raw is None:
            raise StepFailed(f"{self.secrets_path} is missing (tenant.secrets writes it first)")
        updated = self._read_secrets(session).with_admin(**admin)
        session.transport.write_file(self.secrets_path, updated.to_json(), mode=0o600)

    def _store_invite(self, session: HostSession, token: str) -> None:
        expires = medusa_db.pending_invite_expiry(session, self.db_name, self.email, token)
        if expires is None:
            raise StepFailed(
                f"`medusa user --invite` printed an invite for {self.email} that the tenant "
                "database does not hold as pending"
            )
        self._write_admin(
            session, admin_invite_token=token, admin_invite_expires_at=_when(expires)
        )

    def _create_with_password(self, session: HostSession) -> None:
        password = self._read_secrets(session).admin_password
        if password is None:
            password = secrets.token_urlsafe(24)
            self._write_admin(session, admin_password=password)  # kept before it is used
        transport = session.transport
        transport.run(["mkdir", "-p", "-m", "700", posixpath.dirname(self.onboard_script_path)])
        transport.write_file(self.onboard_script_path, self.onboard_script.encode(), mode=0o644)
        logs = self.oneoff.run(
            session,
            ["medusa", "exec", ONBOARD_SCRIPT_IN_CONTAINER],
            what=f"creating admin user {self.email} (medusa exec)",
            redact=lambda text: self.redact(text).replace(password, "********"),
            extra_env={
                "OMNI_TASK": "admin-password",
                "OMNI_ADMIN_EMAIL": self.email,
                "OMNI_ADMIN_PASSWORD": password,
            },
            mounts=((self.onboard_script_path, ONBOARD_SCRIPT_IN_CONTAINER, True),),
        )
        if not _ADMIN_USER_LINE.search(logs):
            raise StepFailed(f"creating admin user {self.email}: the script reported no user")
