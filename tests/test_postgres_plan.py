"""Pure planning of the tenant's Postgres role and database (no server)."""

from __future__ import annotations

import pytest

from omni.engine.step import Verb
from omni.resources.postgres import (
    DatabaseState,
    RoleState,
    TenantDatabase,
    TenantRole,
    public_can_connect,
)
from omni.resources.scram import scram_verifier, verifier_matches

PASSWORD = "correct-horse-battery-staple-0123456789"


def test_scram_verifier_matches_its_own_password_only() -> None:
    verifier = scram_verifier(PASSWORD)
    assert verifier.startswith("SCRAM-SHA-256$4096:")
    assert verifier_matches(verifier, PASSWORD)
    assert not verifier_matches(verifier, PASSWORD + "x")
    assert PASSWORD not in verifier


def test_scram_verifier_is_salted() -> None:
    assert scram_verifier(PASSWORD) != scram_verifier(PASSWORD)


@pytest.mark.parametrize(
    "stored", [None, "", "md5abcdef", "SCRAM-SHA-256$broken", "SCRAM-SHA-256$1:x$y:z"]
)
def test_unusable_verifiers_never_match(stored: str | None) -> None:
    assert not verifier_matches(stored, PASSWORD)


@pytest.mark.parametrize(
    ("acl", "expected"),
    [
        (None, True),  # NULL ACL: defaults, PUBLIC may connect
        (["=Tc/postgres", "postgres=CTc/postgres"], True),
        (["=T/postgres", "postgres=CTc/postgres"], False),
        (["postgres=CTc/postgres", "tenant_a=c/postgres"], False),
        ([], False),
    ],
)
def test_public_can_connect_reads_acl(acl: list[str] | None, expected: bool) -> None:
    assert public_can_connect(acl) is expected


ROLE = TenantRole(role="tenant_acme", password=PASSWORD)


@pytest.mark.parametrize(
    ("state", "verb", "fields"),
    [
        (RoleState(exists=False), Verb.CREATE, {"role", "password"}),
        (RoleState(True, password_matches=True, can_login=True), Verb.NOOP, set()),
        (RoleState(True, password_matches=False, can_login=True), Verb.UPDATE, {"password"}),
        (RoleState(True, password_matches=True, can_login=False), Verb.UPDATE, {"login"}),
        (RoleState(True, True, True, elevated=("SUPERUSER",)), Verb.UPDATE, {"privileges"}),
        (RoleState(True, True, True, elevated=("BYPASSRLS", "REPLICATION")), Verb.UPDATE,
         {"privileges"}),
        (RoleState(True, True, True, member_of=("pg_read_all_data",)), Verb.UPDATE,
         {"member_of"}),
    ],
)
def test_role_plan(state: RoleState, verb: Verb, fields: set[str]) -> None:
    (step,) = ROLE.plan(state)
    assert step.verb is verb
    assert {c.field for c in step.changes} == fields
    assert PASSWORD not in repr(step)


DB = TenantDatabase(database="tenant_acme", owner="tenant_acme")


@pytest.mark.parametrize(
    ("state", "verb", "fields"),
    [
        (DatabaseState(exists=False), Verb.CREATE, {"database", "owner", "public_connect"}),
        (DatabaseState(True, owner="tenant_acme", public_can_connect=False), Verb.NOOP, set()),
        (DatabaseState(True, owner="postgres", public_can_connect=False), Verb.UPDATE, {"owner"}),
        (
            DatabaseState(True, owner="tenant_acme", public_can_connect=True),
            Verb.UPDATE,
            {"public_connect"},
        ),
    ],
)
def test_database_plan(state: DatabaseState, verb: Verb, fields: set[str]) -> None:
    (step,) = DB.plan(state)
    assert step.verb is verb
    assert {c.field for c in step.changes} == fields
