"""Template databases: a tenant's new database copied from an already-migrated one.

Medusa's migrations on an empty database are most of a ``tenant create``. Postgres copies a
database from a template far faster, so per host and per image (and migration recipe: the
command and the tenant's own ``env``) omni keeps a migrated **template database**
``omni_tpl_<image id, 12 hex>_<recipe, 8 hex>`` and creates each new tenant's database with
``CREATE DATABASE ... TEMPLATE``. Set ``postgres.template_databases: false`` on a host to
migrate every new database instead.

A template is built the first time its image is used for a create on the host, under the
host-wide lock ``postgres-templates`` (so two concurrent creates build it once), by
running the tenant's own migrations container against it (same image, command,
environment and network) as the dedicated role ``omni_template``:

- ``omni_template`` is NOLOGIN except while a build runs (LOGIN with a fresh random
  password, sent as a SCRAM verifier, dropped again afterwards) and never owns a database
  except the template it is building, so the database it is building is the only shared
  object it can own;
- while built, the template is owned by ``omni_template`` (it is then what a tenant role is
  to its own database: its owner, and through ``pg_database_owner`` the owner of ``public``)
  with CONNECT revoked from PUBLIC;
- once built it is handed to the admin user, loses every CONNECT grant, is closed to
  connections (``ALLOW_CONNECTIONS false``: no tenant, nor anyone else, ever connects to
  it, which ``CREATE DATABASE ... TEMPLATE`` requires) and marked ``IS_TEMPLATE true``;
  that mark is what "built" means: an unmarked ``omni_tpl_*`` database is a build that
  died and is dropped.

A new tenant database is ``CREATE DATABASE <db> OWNER <role> TEMPLATE <template>
ALLOW_CONNECTIONS false``, closed to PUBLIC like any tenant database, then, connected to
the new database, ``REASSIGN OWNED BY omni_template TO <role>``. REASSIGN OWNED acts on the
current database and on *shared* objects (databases, tablespaces) the role owns; it runs
under the same lock after checking that ``omni_template`` owns no database or tablespace,
so it changes the new database only. Afterwards nothing in the new database may still
depend on ``omni_template`` (``pg_shdepend``), else the step fails. The migration marker
then records the image id and the template (see ``omni.resources.migrations``).

After a build, templates of images no omni app container on the host runs are dropped,
except the one just built. Existing databases are never touched by any of this.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit, urlunsplit

from omni.engine.step import FieldChange, Step, Verb
from omni.errors import StepFailed
from omni.resources.migrations import MIGRATION_TIMEOUT_SECONDS, marker_content
from omni.resources.postgres import DatabaseState, TenantDatabase

if TYPE_CHECKING:
    from omni.hosts.postgres import SharedConnection
    from omni.hosts.session import HostSession
    from omni.resources.migrations import Migrations

TEMPLATE_PREFIX = "omni_tpl_"
TEMPLATE_ROLE = "omni_template"
TEMPLATE_LOCK = "postgres-templates"
# Long enough to wait for another run's build (a migrations run) to finish.
TEMPLATE_LOCK_WAIT_SECONDS = MIGRATION_TIMEOUT_SECONDS + 60.0
# Postgres 15's default: copies block by block into WAL, no checkpoint. FILE_COPY forces
# two checkpoints, which on a busy server cost more than copying a small database.
CLONE_STRATEGY = "wal_log"
BUILD_COMPONENT = "template-build"


def short_image_id(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]


@dataclass(frozen=True)
class TemplateRecipe:
    """What a template database holds: the migrations of ``image`` run by ``command`` with
    the tenant's own ``env`` overrides (they may switch Medusa modules on or off).

    Tenants whose recipe is equal share a template. Pure.
    """

    command: tuple[str, ...]
    env_overrides: Mapping[str, str] = field(default_factory=dict, repr=False)

    def digest(self) -> str:
        payload = json.dumps(
            {"command": list(self.command), "env": sorted(self.env_overrides.items())},
            separators=(",", ":"),
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:8]

    def name(self, image_id: str) -> str:
        """``omni_tpl_<12 hex of the image id>_<8 hex of the recipe>`` (30 bytes)."""
        return f"{TEMPLATE_PREFIX}{short_image_id(image_id)}_{self.digest()}"


def templates_to_drop(
    existing: Iterable[str], in_use_image_ids: Iterable[str], keep: str
) -> list[str]:
    """Built templates to drop: those of no image in use, except ``keep``. Pure, sorted."""
    used = {short_image_id(image_id) for image_id in in_use_image_ids}
    drop = []
    for name in existing:
        if name == keep or not name.startswith(TEMPLATE_PREFIX):
            continue
        image_part = name.removeprefix(TEMPLATE_PREFIX).split("_", 1)[0]
        if image_part not in used:
            drop.append(name)
    return sorted(drop)


def with_credentials(url: str, user: str, password: str, database: str) -> str:
    """``url`` (``postgres://user:pw@host:port/db?query``) with another user, password and
    database; host, port and query kept. Pure."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, "/" + quote(database, safe=""), parts.query, ""))


@dataclass(frozen=True)
class TemplatedDatabaseState:
    database: DatabaseState
    image_id: str | None = None
    template_ready: bool = False  # observed only while the database does not exist
    # Objects (and privileges) in the existing database still tied to the template role:
    # left by a create killed between the copy and the hand-over.
    template_role_objects: int = 0


@dataclass(frozen=True)
class TemplatedDatabase:
    """The tenant's database, created from its image's template database when missing.

    An existing database is converged exactly like :class:`TenantDatabase` (owner, PUBLIC's
    CONNECT), plus the hand-over of anything still owned by ``omni_template``. ``build``
    is the tenant's migrations resource: a missing template is built by running it (same
    image, command, network) with ``DATABASE_URL`` pointing at the template. Idempotent.
    """

    database: str
    owner: str
    image: str
    recipe: TemplateRecipe
    build: Migrations
    marker_path: str
    key: str = "postgres.database"

    @property
    def _plain(self) -> TenantDatabase:
        return TenantDatabase(database=self.database, owner=self.owner, key=self.key)

    def observe(self, session: HostSession) -> TemplatedDatabaseState:
        current = self._plain.observe(session)
        if current.exists:
            return TemplatedDatabaseState(
                current, template_role_objects=_role_dependencies(session, self.database)
            )
        image_id = session.docker().image_id(self.image)
        ready = image_id is not None and _template_ready(session, self.recipe.name(image_id))
        return TemplatedDatabaseState(current, image_id=image_id, template_ready=ready)

    def plan(self, current: TemplatedDatabaseState) -> list[Step]:
        if current.database.exists:
            steps = self._plain.plan(current.database)
            if not current.template_role_objects:
                return steps
            change = FieldChange(
                "template_role_objects", f"{current.template_role_objects} owned by "
                f"{TEMPLATE_ROLE}", f"owned by {self.owner}")
            changes = (*(c for s in steps for c in s.changes), change)
            return [Step(self.key, Verb.UPDATE, f"update database {self.database}", changes,
                         detail={"reassign": True})]
        if current.image_id is None:
            raise StepFailed(f"{self.key}: image {self.image} is not present on the host")
        template = self.recipe.name(current.image_id)
        if current.template_ready:
            summary = (f"create database {self.database} from template {template}, owned by "
                       f"{self.owner}; revoke PUBLIC connect")
            built = template
        else:
            summary = (f"build template database {template} (run "
                       f"`{' '.join(self.build.command)}` in a one-off {self.image} container), "
                       f"then create database {self.database} from it, owned by {self.owner}; "
                       "revoke PUBLIC connect")
            built = f"{template} (built now)"
        return [Step(
            self.key,
            Verb.CREATE,
            summary,
            (
                FieldChange("database", None, self.database),
                FieldChange("owner", None, self.owner),
                FieldChange("template", None, built),
                FieldChange("public_connect", None, "revoked"),
                FieldChange("migrated_image", None, short_image_id(current.image_id)),
            ),
            detail={"template": template, "image_id": current.image_id},
        )]

    def apply(self, session: HostSession, step: Step) -> None:
        if step.verb is not Verb.CREATE:
            self._plain.apply(session, step)
            if step.detail.get("reassign"):
                with _templates_lock(session, f"hand {self.database} its objects"):
                    _drop_dead_builds(session)
                    _hand_over(session, self.database, self.owner)
            return
        from omni.resources.postgres import database_exists

        with _templates_lock(session, f"create {self.database} from a template"):
            image_id = session.docker().image_id(self.image)
            if image_id is None:
                raise StepFailed(f"image {self.image} is not present on host {session.name}")
            template = self.recipe.name(image_id)
            if database_exists(session, self.database):
                raise StepFailed(f"database {self.database} appeared while this run planned to "
                                 "create it; run again", database=self.database)
            _drop_dead_builds(session)
            built = False
            if not _template_ready(session, template):
                _build(session, template, image_id, self.build)
                built = True
            _clone(session, template, self.database, self.owner)
            self._plain.apply(session, step)  # close it to PUBLIC, open it to its owner
            _hand_over(session, self.database, self.owner)
            if built:
                _prune(session, keep=template)
        session.transport.write_file(self.marker_path, marker_content(image_id, template),
                                     mode=0o600)


def _templates_lock(session: HostSession, purpose: str) -> AbstractContextManager[None]:
    return session.lock(TEMPLATE_LOCK, TEMPLATE_LOCK_WAIT_SECONDS, purpose=purpose)


# -- observing ---------------------------------------------------------------------------


def _template_ready(session: HostSession, template: str) -> bool:
    with session.postgres() as conn:
        row = conn.execute(
            "SELECT datistemplate AND NOT datallowconn FROM pg_database WHERE datname = %s",
            (template,),
        ).fetchone()
    return row is not None and bool(row[0])


def _role_dependencies(session: HostSession, database: str) -> int:
    """How many objects or privileges in ``database`` depend on the template role."""
    with session.postgres() as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_shdepend d JOIN pg_database db ON db.oid = d.dbid "
            "JOIN pg_roles r ON r.oid = d.refobjid "
            "WHERE db.datname = %s AND r.rolname = %s",
            (database, TEMPLATE_ROLE),
        ).fetchone()
    return int(str(row[0])) if row is not None else 0


def _template_databases(conn: SharedConnection) -> list[tuple[str, bool]]:
    """Every ``omni_tpl_*`` database and whether it is built (marked a template)."""
    rows = conn.execute(
        "SELECT datname, datistemplate FROM pg_database WHERE starts_with(datname, %s) "
        "ORDER BY 1",
        (TEMPLATE_PREFIX,),
    ).fetchall()
    return [(str(name), bool(ready)) for name, ready in rows]


# -- writing (every function below runs under the templates lock) ------------------------


def build_container_name(template: str) -> str:
    """``omni_tpl_X_Y`` -> ``omni-tpl-X-Y-migrate``."""
    return template.replace("_", "-") + "-migrate"


def _ensure_role(conn: SharedConnection) -> None:
    from psycopg import sql

    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s",
                          (TEMPLATE_ROLE,)).fetchone()
    if exists is None:
        conn.execute(sql.SQL(
            "CREATE ROLE {} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION "
            "NOBYPASSRLS").format(sql.Identifier(TEMPLATE_ROLE)))


def _lock_role(conn: SharedConnection) -> None:
    from psycopg import sql

    conn.execute(sql.SQL("ALTER ROLE {} NOLOGIN PASSWORD NULL").format(
        sql.Identifier(TEMPLATE_ROLE)))


def _drop(conn: SharedConnection, name: str) -> None:
    from psycopg import sql

    db = sql.Identifier(name)
    conn.execute(sql.SQL("ALTER DATABASE {} IS_TEMPLATE false").format(db))
    conn.execute(sql.SQL("DROP DATABASE {}").format(db))


def _drop_dead_builds(session: HostSession) -> None:
    """Drop every unmarked ``omni_tpl_*`` database (a build that died), unless its build
    container is still running (then ``StepFailed``), and take LOGIN back from
    ``omni_template`` if such a build left it: afterwards that role owns no database and
    cannot log in."""
    docker = session.docker()
    with session.postgres() as conn:
        login = conn.execute("SELECT rolcanlogin FROM pg_roles WHERE rolname = %s",
                             (TEMPLATE_ROLE,)).fetchone()
        if login is not None and login[0]:
            _lock_role(conn)
        for name, ready in _template_databases(conn):
            if ready:
                continue
            container = docker.container(build_container_name(name))
            if container is not None and container.running:
                raise StepFailed(
                    f"template database {name} is still being built by container "
                    f"{container.name} on host {session.name} (left by a run that died); "
                    "run again once it has exited", container=container.name)
            if container is not None:
                docker.remove(container.name, force=True)
            _drop(conn, name)


def _build(session: HostSession, template: str, image_id: str, migrations: Migrations) -> None:
    """Create ``template``, migrate it as ``omni_template``, then close and mark it."""
    from psycopg import sql

    from omni.resources.scram import scram_verifier

    password = secrets.token_urlsafe(32)
    db, role = sql.Identifier(template), sql.Identifier(TEMPLATE_ROLE)
    admin = sql.Identifier(session.host.postgres.admin_user)
    with session.postgres() as conn:
        _ensure_role(conn)
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {} ALLOW_CONNECTIONS false").format(
            db, role))
        conn.execute(sql.SQL("REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC").format(db))
        conn.execute(sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(db, role))
        conn.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(db))
        conn.execute(sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}").format(
            role, sql.Literal(scram_verifier(password))))
    env = dict(migrations.env)
    env["DATABASE_URL"] = with_credentials(env["DATABASE_URL"], TEMPLATE_ROLE, password,
                                           template)
    tenant_redact = migrations.redact
    runner = replace(
        migrations,
        container_name=build_container_name(template),
        env=env,
        labels={"omni.managed": "true", "omni.component": BUILD_COMPONENT,
                "omni.template": template},
        redact=lambda text: tenant_redact(text).replace(password, "********"),
    )
    try:
        if runner.run(session) != image_id:
            raise StepFailed(f"image {migrations.image} changed while its template was built; "
                             "run again")
    except BaseException:
        # Half-migrated: useless. If this cleanup fails too, the next build drops it.
        with contextlib.suppress(Exception), session.postgres() as conn:
            _lock_role(conn)
            _terminate(conn, template)
            _drop(conn, template)
        raise
    described = (f"omni template database: migrations of {migrations.image} ({image_id}), "
                 f"`{' '.join(migrations.command)}`, built "
                 f"{datetime.now(UTC).isoformat(timespec='seconds')}")
    with session.postgres() as conn:
        _lock_role(conn)
        conn.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(db))
        _terminate(conn, template)
        conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM {}").format(db, role))
        conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(db, admin))
        conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(db, sql.Literal(described)))
        # Last: the mark is what makes it a usable template.
        conn.execute(sql.SQL("ALTER DATABASE {} IS_TEMPLATE true").format(db))


def _terminate(conn: SharedConnection, database: str) -> None:
    """End any session still connected to ``database`` (a migrations run's stragglers)."""
    conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                 "AND pid <> pg_backend_pid()", (database,))


def _clone(session: HostSession, template: str, database: str, owner: str) -> None:
    from psycopg import sql

    with session.postgres() as conn:
        conn.execute(sql.SQL(
            "CREATE DATABASE {} OWNER {} TEMPLATE {} ALLOW_CONNECTIONS false STRATEGY {}"
        ).format(sql.Identifier(database), sql.Identifier(owner), sql.Identifier(template),
                 sql.SQL(CLONE_STRATEGY)))


def _hand_over(session: HostSession, database: str, owner: str) -> None:
    """Give ``owner`` everything ``omni_template`` owns in ``database``, and only that."""
    from psycopg import sql

    with session.postgres() as conn:
        shared = conn.execute(
            "SELECT d.datname FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba "
            "WHERE r.rolname = %s UNION ALL "
            "SELECT t.spcname FROM pg_tablespace t JOIN pg_roles r ON r.oid = t.spcowner "
            "WHERE r.rolname = %s", (TEMPLATE_ROLE, TEMPLATE_ROLE),
        ).fetchall()
        role_exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s",
                                   (TEMPLATE_ROLE,)).fetchone()
    if role_exists is None:
        return
    if shared:
        names = ", ".join(str(row[0]) for row in shared)
        raise StepFailed(
            f"role {TEMPLATE_ROLE} owns {names} on host {session.name}: REASSIGN OWNED would "
            f"hand that to {owner}; refusing", database=database)
    with session.postgres(database) as conn:
        conn.execute(sql.SQL("REASSIGN OWNED BY {} TO {}").format(
            sql.Identifier(TEMPLATE_ROLE), sql.Identifier(owner)))
    left = _role_dependencies(session, database)
    if left:
        raise StepFailed(
            f"database {database}: {left} object(s) or privilege(s) still tied to role "
            f"{TEMPLATE_ROLE} after the hand-over to {owner}", database=database)


def _prune(session: HostSession, keep: str) -> None:
    """Drop built templates of images no omni app container on the host runs, but ``keep``."""
    containers = session.docker().list_containers(
        {"omni.managed": "true", "omni.component": "app"})
    with session.postgres() as conn:
        built = [name for name, ready in _template_databases(conn) if ready]
        for name in templates_to_drop(built, (c.image_id for c in containers), keep):
            _drop(conn, name)
