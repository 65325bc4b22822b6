"""Template databases on the lab: a tenant created from its image's template database is
indistinguishable from one whose database was migrated.

Two tenants of ``omni-lab/medusa:v3`` (whose migrations include a custom module's table) on
host dev, created through the real CLI: one from an inventory with
``postgres.template_databases: false`` (migrations run on an empty database), one with the
default (database copied from the template). Their databases are then compared: schema
(``pg_dump --schema-only``, role names normalised), migration records and row counts of
every table, ownership of every object.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from omni.inventory.models import Host
from omni.probe import https_get
from omni.resources.templates import TEMPLATE_ROLE
from omni.tenant.dumps import passfile_for
from tests import tenant_lab as tl

pytestmark = pytest.mark.lab

IMAGE = "omni-lab/medusa:v3"


def _domain(slug: str, host: Host) -> str:
    return f"{slug}.{host.name}.lab.test"


def _create(inventory: Path, slug: str, host: Host, *extra: str) -> tl.Run:
    return tl.omni(inventory, "--json", "tenant", "create", slug, "--host", host.name,
                   "--domain", _domain(slug, host), "--image", IMAGE, *extra)


def _db(slug: str) -> str:
    return "tenant_" + slug.replace("-", "_")


@dataclass(frozen=True)
class Pair:
    migrated: str  # slug of the tenant whose migrations ran
    templated: str  # slug of the tenant whose database came from the template
    migrated_steps: dict[str, dict[str, Any]]
    templated_steps: dict[str, dict[str, Any]]
    templated_inventory: Path

    @property
    def template(self) -> str:
        return str(self.templated_steps["postgres.database"]["detail"]["template"])


@pytest.fixture(scope="module")
def inventories(tmp_path_factory: pytest.TempPathFactory, lab_hosts: Any
                ) -> Iterator[tuple[Path, Path]]:
    templated = tl.copy_lab_inventory(tmp_path_factory.mktemp("templated"))
    migrating = tl.copy_lab_inventory(tmp_path_factory.mktemp("migrating"))
    hosts_file = migrating / "hosts.yaml"
    data = yaml.safe_load(hosts_file.read_text())
    for host in data["hosts"].values():
        host.setdefault("postgres", {})["template_databases"] = False
    hosts_file.write_text(yaml.safe_dump(data))
    yield templated, migrating
    for inventory in (templated, migrating):
        for tenant_file in sorted((inventory / "tenants").glob("*.yaml")):
            tl.omni(inventory, "tenant", "destroy", tenant_file.stem, "--yes")


@pytest.fixture(scope="module")
def pair(inventories: tuple[Path, Path], dev_host: Host) -> Pair:
    templated_inventory, migrating_inventory = inventories
    migrated, templated = tl.unique_slug("tpl-m"), tl.unique_slug("tpl-t")
    runs = {}
    for slug, inventory in ((migrated, migrating_inventory), (templated, templated_inventory)):
        run = _create(inventory, slug, dev_host)
        assert run.code == 0, run.stderr
        runs[slug] = {step["resource"]: step for step in run.envelope()["steps"]}
    return Pair(migrated, templated, runs[migrated], runs[templated], templated_inventory)


def test_only_the_migrating_create_runs_migrations(pair: Pair) -> None:
    assert pair.migrated_steps["medusa.migrations"]["verb"] == "run"
    assert "template" not in pair.migrated_steps["postgres.database"]["summary"]
    database = pair.templated_steps["postgres.database"]
    assert database["verb"] == "create" and pair.template.startswith("omni_tpl_")
    assert f"create database {_db(pair.templated)} from" in database["summary"]
    migrations = pair.templated_steps["medusa.migrations"]
    assert migrations["verb"] == "noop" and pair.template in migrations["summary"]


def test_both_tenants_pass_their_health_checks(pair: Pair, dev_host: Host) -> None:
    address = dev_host.nginx.listen_address or dev_host.address
    for slug in (pair.migrated, pair.templated):
        answer = https_get(address, dev_host.nginx.https_port, _domain(slug, dev_host),
                           "/health", dev_host.health.ca_bundle)
        assert answer.status == 200, slug


def _schema(session: Any, host: Host, database: str, role: str) -> str:
    pg = host.postgres
    password = session.admin_password()
    with passfile_for(session.transport, f"{pg.dump_dir}/schema-compare", pg.host, pg.port,
                      database, pg.admin_user, password) as passfile:
        text = session.transport.run(
            ["env", f"PGPASSFILE={passfile}", "pg_dump", "--schema-only", "--no-password",
             f"--host={pg.host}", f"--port={pg.port}", f"--username={pg.admin_user}",
             database],
            timeout=120, secrets=[password],
        ).text()
    # pg_dump's \restrict lines carry a random key per run.
    lines = [line for line in text.splitlines() if not line.startswith(("\\restrict",
                                                                        "\\unrestrict"))]
    schema = re.sub(rf"\b{re.escape(role)}\b", "TENANT_ROLE", "\n".join(lines))
    # Medusa's workflow-engine migration backfills workflow_execution.run_id with a ULID it
    # generates as it runs, left as the column's default: two migrating runs differ there
    # too. That one default is masked; everything else must match byte for byte.
    return _RUN_ID_DEFAULT.sub(r"\1'<ulid>'", schema)


_RUN_ID_DEFAULT = re.compile(r"(\brun_id text DEFAULT )'01[0-9A-HJKMNP-TV-Z]{24}'")


def test_schema_is_the_same_as_after_migrations(
    pair: Pair, dev_host: Host, session: Callable[[Host], Any]
) -> None:
    s = session(dev_host)
    migrated = _schema(s, dev_host, _db(pair.migrated), _db(pair.migrated))
    templated = _schema(s, dev_host, _db(pair.templated), _db(pair.templated))
    assert "CREATE TABLE public.lab_note" in migrated  # v3's own module migrated
    assert "TENANT_ROLE" in migrated and TEMPLATE_ROLE not in templated
    assert "run_id text DEFAULT '<ulid>'" in migrated
    assert templated == migrated


_COUNTS = (
    "SELECT table_name::text, (xpath('/row/c/text()', query_to_xml(format("
    "'SELECT count(*) AS c FROM %I.%I', table_schema, table_name), false, true, '')))[1]"
    "::text::int FROM information_schema.tables WHERE table_schema = 'public' "
    "AND table_type = 'BASE TABLE' ORDER BY 1"
)
_RECORDS = {
    "mikro_orm_migrations": "SELECT name FROM mikro_orm_migrations ORDER BY 1",
    "script_migrations": "SELECT script_name, finished_at IS NOT NULL FROM script_migrations "
                         "ORDER BY 1",
    "link_module_migrations": "SELECT table_name, link_descriptor::text FROM "
                              "link_module_migrations ORDER BY 1",
}


def test_migration_records_and_row_counts_are_the_same(
    pair: Pair, dev_host: Host, session: Callable[[Host], Any]
) -> None:
    s = session(dev_host)
    seen = []
    for slug in (pair.migrated, pair.templated):
        with s.postgres(_db(slug)) as conn:
            records = {name: conn.execute(query).fetchall() for name, query in _RECORDS.items()}
            counts = conn.execute(_COUNTS).fetchall()
        seen.append((records, counts))
    (migrated_records, migrated_counts), (templated_records, templated_counts) = seen
    assert len(migrated_records["mikro_orm_migrations"]) > 100
    assert any("Migration20261202042051" in str(row[0])
               for row in migrated_records["mikro_orm_migrations"])
    assert migrated_records["script_migrations"] and migrated_records["link_module_migrations"]
    assert templated_records == migrated_records
    assert templated_counts == migrated_counts


# Every object in the tenant's schemas with its owner; extension members (owned by whoever
# the extension's script ran as) are left out, the extensions themselves are in.
_OWNERS = """
SELECT kind, name, pg_get_userbyid(owner)::text FROM (
  SELECT 'relation' AS kind, c.oid::regclass::text AS name, c.relowner AS owner,
         'pg_class'::regclass AS cls, c.oid AS oid
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
  UNION ALL
  SELECT 'function', p.oid::regprocedure::text, p.proowner, 'pg_proc'::regclass, p.oid
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
   WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
  UNION ALL
  SELECT 'type', t.oid::regtype::text, t.typowner, 'pg_type'::regclass, t.oid
    FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
   WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
     AND t.typcategory <> 'A'  -- an array type is owned with its element type
  UNION ALL
  SELECT 'schema', n.nspname::text, n.nspowner, 'pg_namespace'::regclass, n.oid
    FROM pg_namespace n
   WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast', 'public')
     AND n.nspname NOT LIKE 'pg_temp%' AND n.nspname NOT LIKE 'pg_toast_temp%'
  UNION ALL
  SELECT 'extension', e.extname::text, e.extowner, 'pg_extension'::regclass, e.oid
    FROM pg_extension e WHERE e.extname <> 'plpgsql'
) o
WHERE NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = o.cls AND d.objid = o.oid
                  AND d.deptype = 'e')
ORDER BY 1, 2
"""


def test_tenant_role_owns_everything_in_its_database(
    pair: Pair, dev_host: Host, session: Callable[[Host], Any]
) -> None:
    s = session(dev_host)
    role = _db(pair.templated)
    with s.postgres(role) as conn:
        owners = conn.execute(_OWNERS).fetchall()
        public_owner = conn.execute(
            "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'public'"
        ).fetchone()
    assert len(owners) > 300
    assert {str(owner) for _kind, _name, owner in owners} == {role}, [
        row for row in owners if row[2] != role][:5]
    assert public_owner == ("pg_database_owner",)
    with s.postgres() as conn:
        datdba = conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database "
                              "WHERE datname = %s", (role,)).fetchone()
        left = conn.execute(
            "SELECT count(*) FROM pg_shdepend d JOIN pg_database db ON db.oid = d.dbid "
            "JOIN pg_roles r ON r.oid = d.refobjid WHERE db.datname = %s AND r.rolname = %s",
            (role, TEMPLATE_ROLE)).fetchone()
    assert datdba == (role,) and left == (0,)


def test_template_is_closed_marked_and_no_tenant_can_connect(
    pair: Pair, dev_host: Host, session: Callable[[Host], Any]
) -> None:
    s = session(dev_host)
    with s.postgres() as conn:
        row = conn.execute(
            "SELECT datistemplate, datallowconn, pg_get_userbyid(datdba), "
            "coalesce(datacl::text, 'NULL') FROM pg_database WHERE datname = %s",
            (pair.template,)).fetchone()
        connect = conn.execute(
            "SELECT r.rolname FROM pg_roles r WHERE r.rolname LIKE 'tenant\\_%%' "
            "AND has_database_privilege(r.oid, %s, 'CONNECT')", (pair.template,)).fetchall()
        builder = conn.execute("SELECT rolcanlogin, rolpassword IS NULL, rolsuper "
                               "FROM pg_authid WHERE rolname = %s", (TEMPLATE_ROLE,)).fetchone()
    assert row is not None
    is_template, allows_connections, owner, acl = row
    assert is_template is True and allows_connections is False
    assert owner == dev_host.postgres.admin_user
    assert "tenant_" not in str(acl) and TEMPLATE_ROLE not in str(acl) and "=c" not in str(acl)
    assert connect == []
    assert builder == (False, True, False)


def test_migration_record_names_the_image_and_the_template(
    pair: Pair, dev_host: Host, session: Callable[[Host], Any]
) -> None:
    s = session(dev_host)
    image_id = s.docker().image_id(IMAGE)
    raw = s.transport.read_file(f"{dev_host.state_dir}/tenants/{pair.templated}/migrated-image")
    assert raw is not None
    assert raw.decode().splitlines() == [image_id, f"from-template {pair.template}"]


def test_rerun_is_all_noops_and_next_tenant_is_copied_without_a_build(
    pair: Pair, dev_host: Host
) -> None:
    again = tl.omni(pair.templated_inventory, "--json", "tenant", "create", pair.templated)
    assert again.code == 0, again.stderr
    assert again.envelope()["changed"] is False
    dry = _create(pair.templated_inventory, tl.unique_slug("tpl-d"), dev_host, "--dry-run")
    assert dry.code == 0, dry.stderr
    steps = {step["resource"]: step for step in dry.envelope()["steps"]}
    assert steps["postgres.database"]["summary"].startswith("create database ")
    assert f"from template {pair.template}," in steps["postgres.database"]["summary"]
    assert steps["medusa.migrations"]["verb"] == "noop"


def test_a_create_killed_before_the_hand_over_is_finished_by_the_next(
    pair: Pair, dev_host: Host, session: Callable[[Host], Any]
) -> None:
    """What a run killed between the copy and ``REASSIGN OWNED`` leaves (objects still
    owned by the template role), plus what a build that died leaves (an unmarked template
    owned by that role, which REASSIGN OWNED would otherwise give away): the next create
    hands the objects over and drops the dead build."""
    from psycopg import sql

    s = session(dev_host)
    database = _db(pair.templated)
    dead = "omni_tpl_000000000000_deadbeef"
    with s.postgres(database) as conn:
        conn.execute(sql.SQL("ALTER TABLE {} OWNER TO {}").format(
            sql.Identifier("lab_note"), sql.Identifier(TEMPLATE_ROLE)))
    with s.postgres() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {} ALLOW_CONNECTIONS false").format(
            sql.Identifier(dead), sql.Identifier(TEMPLATE_ROLE)))
    dry = tl.omni(pair.templated_inventory, "--json", "tenant", "create", pair.templated,
                  "--dry-run")
    assert dry.code == 0, dry.stderr
    step = {st["resource"]: st for st in dry.envelope()["steps"]}["postgres.database"]
    assert step["verb"] == "update"
    assert step["changes"][-1]["before"].startswith(f"1 owned by {TEMPLATE_ROLE}")
    run = tl.omni(pair.templated_inventory, "--json", "tenant", "create", pair.templated)
    assert run.code == 0, run.stderr
    with s.postgres(database) as conn:
        owner = conn.execute("SELECT pg_get_userbyid(relowner) FROM pg_class "
                             "WHERE relname = 'lab_note'").fetchone()
    with s.postgres() as conn:
        left = conn.execute("SELECT datname FROM pg_database WHERE datname = %s",
                            (dead,)).fetchall()
        template_owner = conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database "
                                      "WHERE datname = %s", (pair.template,)).fetchone()
    assert owner == (database,)
    assert left == []
    assert template_owner == (dev_host.postgres.admin_user,)
    again = tl.omni(pair.templated_inventory, "--json", "tenant", "create", pair.templated)
    assert again.code == 0 and again.envelope()["changed"] is False, again.stderr


def test_two_concurrent_creates_of_a_new_image_build_its_template_once(
    inventories: tuple[Path, Path], dev_host: Host, session: Callable[[Host], Any]
) -> None:
    from psycopg import sql

    templated_inventory, _ = inventories
    image = "omni-lab/medusa:v2"
    s = session(dev_host)
    image_id = s.docker().image_id(image)
    assert image_id is not None
    pattern = f"omni\\_tpl\\_{image_id.removeprefix('sha256:')[:12]}\\_%"
    with s.postgres() as conn:  # start from a host with no template of this image
        for (name,) in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s",
                                    (pattern,)).fetchall():
            conn.execute(sql.SQL("ALTER DATABASE {} IS_TEMPLATE false").format(
                sql.Identifier(str(name))))
            conn.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(str(name))))
    slugs = [tl.unique_slug("tpl-c"), tl.unique_slug("tpl-c")]
    procs = [tl.start_omni(templated_inventory, "--json", "tenant", "create", slug, "--host",
                           dev_host.name, "--domain", _domain(slug, dev_host), "--image", image)
             for slug in slugs]
    finished = [(proc, *proc.communicate(timeout=900)) for proc in procs]
    for proc, _out, err in finished:
        assert proc.returncode == 0, err
    # Both normally plan a build (neither sees a template yet); the one that waited for the
    # lock finds it built and only copies it: a second build would fail on the name.
    summaries = [{step["resource"]: step for step in tl.Run([], 0, out, "").envelope()["steps"]}
                 ["postgres.database"]["summary"] for _proc, out, _err in finished]
    assert any(summary.startswith("build template database ") for summary in summaries)
    with s.postgres() as conn:
        templates = conn.execute(
            "SELECT datname, datistemplate FROM pg_database WHERE datname LIKE %s",
            (pattern,)).fetchall()
    assert len(templates) == 1 and templates[0][1] is True, templates
    for slug in slugs:
        raw = s.transport.read_file(f"{dev_host.state_dir}/tenants/{slug}/migrated-image")
        assert raw is not None
        assert raw.decode().splitlines() == [image_id, f"from-template {templates[0][0]}"]
