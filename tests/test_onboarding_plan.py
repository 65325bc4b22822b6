"""Pure planning of a tenant's onboarding: admin invite, publishable key, secrets file."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from omni.engine.step import Verb
from omni.resources.admin_user import (
    AdminUser,
    AdminUserState,
    invite_url,
    parse_invite_token,
    plan_admin_user,
)
from omni.resources.files import FileState
from omni.resources.medusa_oneoff import log_tail, mask_tokens
from omni.resources.storefront_key import (
    PublishableKey,
    PublishableKeyState,
    parse_printed_key,
    plan_publishable_key,
)
from omni.tenant.resources import tenant_resources
from omni.tenant.secrets import TenantSecrets
from omni.tenant.secrets_file import SecretsFile
from tests.factories import make_secrets, make_spec

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
EMAIL = "owner@shop.example"
TOKEN = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpZCI6Imludml0ZV8wMSIsImVtYWlsIjoieCJ9"
    ".Y2Nd6vKUzL7W_UI-Gq6zSDQJIq1ajiXjrLP1aTzrqVI"
)
# What `medusa user -e EMAIL --invite` logged on the lab's Medusa 2.21.2 (production
# logger: one JSON object per line).
INVITE_LOG = (
    '{"level":"info","message":"No link to load from /app/src/links. skipped.",'
    '"timestamp":"2026-12-02 04:21:11"}\n'
    '{"level":"info","message":"\\n      Invite token: ' + TOKEN + "\\n      Open the invite in "
    "Medusa Admin at: [your-admin-url]/invite?token=" + TOKEN + '","timestamp":"2026-12-02"}\n'
)


@pytest.mark.parametrize(
    ("state", "verb", "words"),
    [
        (AdminUserState(database_ready=False), Verb.CREATE, "after migrations"),
        (AdminUserState(database_ready=True), Verb.CREATE, f"invite {EMAIL}"),
        (AdminUserState(True, user_exists=True), Verb.NOOP, "exists"),
        (
            AdminUserState(True, user_exists=True, invite_held=True, password_held=True),
            Verb.NOOP,
            "exists",
        ),
        (
            AdminUserState(True, invite_held=True, held_invite_expires=NOW + timedelta(hours=20)),
            Verb.NOOP,
            "pending until 2026-12-03T08:00:00Z",
        ),
        (  # issued 23.5 h ago: re-issued before the owner can open a dead link
            AdminUserState(True, invite_held=True, held_invite_expires=NOW + timedelta(minutes=30)),
            Verb.UPDATE,
            "re-issue",
        ),
        (
            AdminUserState(True, invite_held=True, held_invite_expires=NOW - timedelta(days=3)),
            Verb.UPDATE,
            "re-issue",
        ),
        (  # held token no longer pending (deleted in the admin, or the database was rebuilt)
            AdminUserState(True, invite_held=True),
            Verb.UPDATE,
            "no longer pending",
        ),
        (AdminUserState(True, password_held=True), Verb.CREATE, "stored generated password"),
    ],
)
def test_admin_user_plan(state: AdminUserState, verb: Verb, words: str) -> None:
    (step,) = plan_admin_user(state, EMAIL, NOW)
    assert step.verb is verb
    assert step.resource == "medusa.admin"
    assert words in step.summary


def test_admin_user_plan_names_the_method_apply_uses() -> None:
    (invite,) = plan_admin_user(AdminUserState(True), EMAIL, NOW)
    (password,) = plan_admin_user(AdminUserState(True, password_held=True), EMAIL, NOW)
    assert invite.detail == {"method": "invite"}
    assert password.detail == {"method": "password"}


def test_admin_user_plan_is_pure() -> None:
    state = AdminUserState(True, invite_held=True, held_invite_expires=NOW + timedelta(hours=2))
    assert plan_admin_user(state, EMAIL, NOW) == plan_admin_user(state, EMAIL, NOW)


def test_invite_token_is_read_from_medusas_json_log_line() -> None:
    assert parse_invite_token(INVITE_LOG) == TOKEN
    assert parse_invite_token('{"message":"User created successfully."}') is None


def test_invite_url_points_at_the_admin_invite_page() -> None:
    assert invite_url("https://shop.example", TOKEN) == (
        f"https://shop.example/app/invite?token={TOKEN}"
    )


def test_log_tails_in_errors_never_carry_a_token() -> None:
    assert TOKEN not in mask_tokens(INVITE_LOG)
    tail = log_tail(INVITE_LOG + "db-secret-0123456789abcdef failed\n", make_spec().redactor().text)
    assert TOKEN not in tail and "db-secret" not in tail and "failed" in tail


@pytest.mark.parametrize(
    ("state", "verb", "words"),
    [
        (PublishableKeyState(database_ready=False), Verb.CREATE, "after migrations"),
        (PublishableKeyState(database_ready=True), Verb.CREATE, "create the storefront's"),
        (PublishableKeyState(True, "pk_" + "a" * 64), Verb.CREATE, "create"),
        (PublishableKeyState(True, "pk_" + "a" * 64, live=True), Verb.UPDATE, "link"),
        (PublishableKeyState(True, "pk_" + "a" * 64, True, True), Verb.NOOP, "linked"),
    ],
)
def test_publishable_key_plan(state: PublishableKeyState, verb: Verb, words: str) -> None:
    (step,) = plan_publishable_key(state)
    assert step.verb is verb
    assert step.resource == "medusa.publishable_key"
    assert words in step.summary


def test_printed_publishable_key_is_parsed_from_script_output() -> None:
    logs = (
        '{"level":"info","message":"Executing script at /omni/onboard.js..."}\n'
        "OMNI_PUBLISHABLE_KEY=pk_a74d756d sc_01M8TFR4JEEVBEFJ4HRG1X23DP\n"
    )
    found = parse_printed_key(logs)
    assert found is not None
    assert (found.publishable_key, found.sales_channel_id) == (
        "pk_a74d756d",
        "sc_01M8TFR4JEEVBEFJ4HRG1X23DP",
    )
    assert parse_printed_key("Finished executing script.") is None


def test_secrets_without_admin_fields_load_and_stay_byte_identical() -> None:
    old = json.dumps(
        {
            "cookie_secret": "c" * 20,
            "db_password": "d" * 20,
            "jwt_secret": "j" * 20,
            "redis_password": "r" * 20,
        },
        indent=2,
        sort_keys=True,
    ).encode() + b"\n"
    loaded = TenantSecrets.from_json(old)
    assert loaded.admin_invite_token is None and loaded.admin_password is None
    assert loaded.to_json() == old
    with pytest.raises(KeyError):
        TenantSecrets.from_json(b'{"db_password": "x"}')


def test_redactor_masks_the_invite_token_and_password_but_not_the_expiry() -> None:
    secrets = make_secrets().with_admin(
        admin_invite_token=TOKEN,
        admin_invite_expires_at="2026-12-03T08:00:00Z",
        admin_password="generated-password-123",
    )
    assert TOKEN in secrets.values() and "generated-password-123" in secrets.values()
    assert "2026-12-03T08:00:00Z" not in secrets.values()
    spec = make_spec()
    from dataclasses import replace

    redact = replace(spec, secrets=secrets).redactor().text
    assert redact(f"link ?token={TOKEN} pw generated-password-123") == (
        "link ?token=******** pw ********"
    )


def test_secrets_file_keeps_the_admin_fields_found_on_the_host() -> None:
    secrets = make_secrets()
    on_host = secrets.with_admin(
        admin_invite_token=TOKEN, admin_invite_expires_at="2026-12-03T08:00:00Z"
    ).to_json()
    resource = SecretsFile(path="/srv/acme/secrets.json", secrets=secrets)
    (step,) = resource.plan(FileState(on_host, "600", "0:0"))
    assert step.verb is Verb.NOOP


def test_secrets_file_diff_masks_every_value() -> None:
    secrets = make_secrets().with_admin(admin_invite_token=TOKEN)
    resource = SecretsFile(path="/srv/acme/secrets.json", secrets=secrets)
    (step,) = resource.plan(FileState(None))
    assert step.verb is Verb.CREATE
    text = json.dumps(step.to_dict())
    assert all(value not in text for value in secrets.values())


def test_onboarding_resources_come_last_and_admin_only_with_an_email() -> None:
    keys = [r.key for r in tenant_resources(make_spec(admin_email=EMAIL))]
    assert keys[-4:] == [
        "acme.certificate",
        "nginx.vhost",
        "medusa.admin",
        "medusa.publishable_key",
    ]
    assert keys[0] == "tenant.secrets"
    without = [r.key for r in tenant_resources(make_spec())]
    assert "medusa.admin" not in without and without[-1] == "medusa.publishable_key"
    resources = tenant_resources(make_spec(admin_email=EMAIL))
    admin = next(r for r in resources if r.key == "medusa.admin")
    assert isinstance(admin, AdminUser)
    key = tenant_resources(make_spec())[-1]
    assert isinstance(key, PublishableKey)
    assert "********" not in key.onboard_script and "db-secret" not in key.onboard_script


@pytest.mark.parametrize(
    "bad", ["Owner@shop.example", "owner", "owner@localhost", "a b@shop.example", "x@-bad.example"]
)
def test_admin_email_is_validated(bad: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        make_spec(admin_email=bad)
