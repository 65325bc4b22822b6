"""Pure planning of template databases (no server): names, pruning, the database and
migrations steps a create plans with and without a template."""

from __future__ import annotations

import dataclasses
import json

import pytest

from omni.engine.step import Verb
from omni.resources.migrations import Migrations, MigrationState, marker_content, read_marker
from omni.resources.postgres import DatabaseState, TenantDatabase
from omni.resources.templates import (
    TEMPLATE_ROLE,
    TemplatedDatabase,
    TemplatedDatabaseState,
    TemplateRecipe,
    build_container_name,
    templates_to_drop,
    with_credentials,
)
from omni.tenant.resources import database_resource, migrations_resource, tenant_resources
from omni.tenant.spec import TenantSpec
from tests.factories import make_host, make_spec

IMAGE_ID = "sha256:" + "ab12" * 16
OTHER_ID = "sha256:" + "cd34" * 16
SECRET = "s3cret-value-0123456789abcdef"
RECIPE = TemplateRecipe(("medusa", "db:migrate"), {})


def test_template_name_is_short_image_id_and_recipe_digest() -> None:
    name = RECIPE.name(IMAGE_ID)
    assert name == f"omni_tpl_ab12ab12ab12_{RECIPE.digest()}"
    assert len(name.encode()) <= 63
    assert RECIPE.name(OTHER_ID) != name


@pytest.mark.parametrize(
    "other",
    [
        TemplateRecipe(("medusa", "db:migrate", "--skip-links"), {}),
        TemplateRecipe(("medusa", "db:migrate"), {"FEATURE_X": "1"}),
    ],
)
def test_a_different_command_or_tenant_env_gets_its_own_template(other: TemplateRecipe) -> None:
    assert other.name(IMAGE_ID) != RECIPE.name(IMAGE_ID)


def test_recipe_digest_ignores_env_order() -> None:
    a = TemplateRecipe(("m",), {"A": "1", "B": "2"})
    b = TemplateRecipe(("m",), {"B": "2", "A": "1"})
    assert a.digest() == b.digest()


@pytest.mark.parametrize(
    ("existing", "in_use", "keep", "dropped"),
    [
        # the image in use and the newest (kept) survive; an unused one goes
        (["omni_tpl_ab12ab12ab12_x", "omni_tpl_cd34cd34cd34_x", "omni_tpl_ef56ef56ef56_x"],
         [IMAGE_ID], "omni_tpl_ef56ef56ef56_x", ["omni_tpl_cd34cd34cd34_x"]),
        # nothing in use: only the one just built stays
        (["omni_tpl_ab12ab12ab12_x", "omni_tpl_cd34cd34cd34_x"], [], "omni_tpl_cd34cd34cd34_x",
         ["omni_tpl_ab12ab12ab12_x"]),
        # every recipe of an image in use stays
        (["omni_tpl_ab12ab12ab12_x", "omni_tpl_ab12ab12ab12_y"], [IMAGE_ID], "omni_tpl_new_z",
         []),
        # never anything that is not an omni template
        (["tenant_acme", "template1"], [], "omni_tpl_new_z", []),
    ],
)
def test_templates_to_drop_keeps_images_in_use_and_the_newest(
    existing: list[str], in_use: list[str], keep: str, dropped: list[str]
) -> None:
    assert templates_to_drop(existing, in_use, keep) == dropped


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgres://tenant_a:pw@127.0.0.2:5432/tenant_a?sslmode=disable",
         "postgres://omni_template:n%2Fw%40x@127.0.0.2:5432/omni_tpl_1?sslmode=disable"),
        ("postgres://u:p@db.internal/x", "postgres://omni_template:n%2Fw%40x@db.internal/omni_tpl_1"),
        ("postgres://u:p@[::1]:6543/x", "postgres://omni_template:n%2Fw%40x@[::1]:6543/omni_tpl_1"),
    ],
)
def test_with_credentials_swaps_user_password_and_database_only(url: str, expected: str) -> None:
    assert with_credentials(url, TEMPLATE_ROLE, "n/w@x", "omni_tpl_1") == expected


def test_build_container_name_is_a_docker_name() -> None:
    assert build_container_name("omni_tpl_ab12_cd") == "omni-tpl-ab12-cd-migrate"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, None),
        (b"", None),
        (b"sha256:aaa\n", "sha256:aaa"),
        (marker_content("sha256:aaa", "omni_tpl_x"), "sha256:aaa"),
    ],
)
def test_marker_first_line_is_the_image_id(raw: bytes | None, expected: str | None) -> None:
    assert read_marker(raw) == expected


def test_marker_names_the_template() -> None:
    assert marker_content("sha256:aaa", "omni_tpl_x") == b"sha256:aaa\nfrom-template omni_tpl_x\n"
    assert marker_content("sha256:aaa") == b"sha256:aaa\n"


def _migrations(template: TemplateRecipe | None = RECIPE) -> Migrations:
    return Migrations(
        container_name="omni-acme-migrate",
        image="omni-lab/medusa:v1",
        command=("medusa", "db:migrate"),
        env={"JWT_SECRET": SECRET, "DATABASE_URL": f"postgres://tenant_acme:{SECRET}@h/db"},
        labels={},
        marker_path="/srv/t/migrated-image",
        redact=lambda s: s.replace(SECRET, "********"),
        database="tenant_acme",
        template=template,
    )


def _database() -> TemplatedDatabase:
    return TemplatedDatabase(database="tenant_acme", owner="tenant_acme",
                             image="omni-lab/medusa:v1", recipe=RECIPE, build=_migrations(),
                             marker_path="/srv/t/migrated-image")


@pytest.mark.parametrize(
    ("state", "verb", "words"),
    [
        (MigrationState(IMAGE_ID, None, database_from_template=True), Verb.NOOP,
         "come with template database omni_tpl_ab12ab12ab12_"),
        (MigrationState(IMAGE_ID, None), Verb.RUN, "run `medusa db:migrate`"),
        (MigrationState(IMAGE_ID, OTHER_ID), Verb.RUN, "run `medusa db:migrate`"),
        (MigrationState(IMAGE_ID, IMAGE_ID), Verb.NOOP, "already ran"),
    ],
)
def test_migrations_have_nothing_to_do_for_a_database_from_a_template(
    state: MigrationState, verb: Verb, words: str
) -> None:
    (step,) = _migrations().plan(state)
    assert step.verb is verb and words in step.summary


def test_migrations_without_templates_ignore_the_flag() -> None:
    (step,) = _migrations(template=None).plan(
        MigrationState(IMAGE_ID, None, database_from_template=True))
    assert step.verb is Verb.RUN


def test_missing_database_with_a_built_template_is_created_from_it() -> None:
    (step,) = _database().plan(TemplatedDatabaseState(
        DatabaseState(exists=False), image_id=IMAGE_ID, template_ready=True))
    template = RECIPE.name(IMAGE_ID)
    assert step.verb is Verb.CREATE
    assert step.summary.startswith(f"create database tenant_acme from template {template}")
    changes = {c.field: c.after for c in step.changes}
    assert changes["template"] == template and changes["owner"] == "tenant_acme"
    assert changes["migrated_image"] == "ab12ab12ab12"
    assert step.detail == {"template": template, "image_id": IMAGE_ID}


def test_missing_template_is_planned_as_a_build_first() -> None:
    (step,) = _database().plan(TemplatedDatabaseState(
        DatabaseState(exists=False), image_id=IMAGE_ID, template_ready=False))
    template = RECIPE.name(IMAGE_ID)
    assert step.summary.startswith(f"build template database {template} (run `medusa db:migrate`")
    assert {c.field: c.after for c in step.changes}["template"] == f"{template} (built now)"
    assert SECRET not in json.dumps(step.to_dict())


def test_missing_image_is_refused_before_anything_is_built() -> None:
    from omni.errors import StepFailed

    with pytest.raises(StepFailed, match="not present on the host"):
        _database().plan(TemplatedDatabaseState(DatabaseState(exists=False)))


@pytest.mark.parametrize(
    "database",
    [
        DatabaseState(True, owner="tenant_acme", public_can_connect=False),
        DatabaseState(True, owner="someone", public_can_connect=True),
        DatabaseState(True, owner="tenant_acme", public_can_connect=True),
    ],
)
def test_an_existing_database_is_converged_like_any_tenant_database(
    database: DatabaseState,
) -> None:
    plain = TenantDatabase(database="tenant_acme", owner="tenant_acme").plan(database)
    assert _database().plan(TemplatedDatabaseState(database)) == plain


def test_objects_left_to_the_template_role_are_handed_over() -> None:
    (step,) = _database().plan(TemplatedDatabaseState(
        DatabaseState(True, owner="tenant_acme", public_can_connect=False),
        template_role_objects=3))
    assert step.verb is Verb.UPDATE and step.detail == {"reassign": True}
    (change,) = step.changes
    assert change.before == f"3 owned by {TEMPLATE_ROLE}" and change.after == "owned by tenant_acme"


def _spec(template_databases: bool, env: dict[str, str] | None = None) -> TenantSpec:
    spec = make_spec(env=env or {})
    host = make_host(postgres={"template_databases": template_databases})
    return dataclasses.replace(spec, host=host)


def test_template_databases_default_to_on() -> None:
    assert make_host().postgres.template_databases


def test_host_setting_chooses_the_database_resource() -> None:
    on, off = _spec(True), _spec(False)
    assert isinstance(database_resource(on, migrations_resource(on)), TemplatedDatabase)
    assert isinstance(database_resource(off, migrations_resource(off)), TenantDatabase)
    assert migrations_resource(off).template is None
    assert migrations_resource(on).template == RECIPE


def test_tenant_env_is_part_of_the_recipe() -> None:
    spec = _spec(True, env={"FEATURE_X": "1"})
    recipe = migrations_resource(spec).template
    assert recipe is not None and recipe.name(IMAGE_ID) != RECIPE.name(IMAGE_ID)


def test_database_comes_right_before_migrations_after_redis() -> None:
    keys = [r.key for r in tenant_resources(_spec(True))]
    assert keys.index("redis.container") < keys.index("postgres.database")
    assert keys.index("postgres.database") + 1 == keys.index("medusa.migrations")
    assert keys.index("postgres.role") < keys.index("postgres.database")
