"""Read and write the inventory directory.

Layout::

    <inventory>/hosts.yaml            the servers (omni.inventory.models.HostsFile)
    <inventory>/tenants/<slug>.yaml   one tenant each (omni.inventory.models.Tenant)

Reading never touches a host. Every problem is one line naming the file, the field path
and the rule; :func:`load_inventory` raises the first, :func:`collect_inventory` returns
them all (for ``omni inventory check``).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from omni.errors import InvalidInput, InventoryError
from omni.inventory.checks import cross_file_problems
from omni.inventory.models import Host, HostsFile, Tenant

M = TypeVar("M", bound=BaseModel)

HOSTS_FILE = "hosts.yaml"
TENANTS_DIR = "tenants"


@dataclass(frozen=True)
class Inventory:
    """A fully validated inventory (every file and every cross-file rule passed)."""

    path: Path
    hosts: Mapping[str, Host]
    tenants: Mapping[str, Tenant]

    def host(self, name: str) -> Host:
        """The host called ``name``; raises :class:`InvalidInput` naming the known ones."""
        try:
            return self.hosts[name]
        except KeyError:
            known = ", ".join(sorted(self.hosts)) or "none"
            raise InvalidInput(
                f"host: unknown host {name!r} (known: {known})", field="host"
            ) from None

    def tenant_file(self, slug: str) -> Path:
        return tenant_path(self.path, slug)


@dataclass
class InventoryReport:
    """Everything that could be read, and every problem found (empty when valid)."""

    path: Path
    hosts: dict[str, Host] | None = None  # None: hosts.yaml missing or invalid
    tenants: dict[str, Tenant] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def tenant_path(inventory: Path, slug: str) -> Path:
    return inventory / TENANTS_DIR / f"{slug}.yaml"


def describe_validation_error(err: ValidationError, source: str | None = None) -> str:
    """One line for a pydantic error: ``[source: ]field.path: rule``, first error only.

    Input values are left out on purpose: they may be secrets (env overrides) and they are
    already in the file the message names.
    """
    first = err.errors(include_url=False, include_input=False)[0]
    parts = [str(part) for part in first["loc"]]
    msg = first["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if parts and parts[-1] == "[key]":  # pydantic's marker for a bad mapping key
        parts.pop()
        msg = f"key {msg}"
    loc = ".".join(parts)
    if first["type"] == "missing":
        msg = "required field is missing"
    elif first["type"] == "extra_forbidden":
        msg = "unknown field (not part of the format; check the spelling)"
    line = f"{loc}: {msg}" if loc else msg
    if source:
        line = f"{source}: {line}"
    more = err.error_count() - 1
    if more:
        line += f" (and {more} more problem{'s' if more > 1 else ''} in this input)"
    return line


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load, but a key given twice in one mapping is an error instead of last-wins."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=True)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping
)


def _read_yaml(path: Path) -> Any:
    """Parse one YAML file; raises :class:`InventoryError` (one line) when unreadable."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InventoryError(f"{path}: file not found", file=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InventoryError(f"{path}: cannot read: {exc}", file=str(path)) from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InventoryError(
            f"{path}: not valid YAML: {problem}{where}", file=str(path)
        ) from None


def _parse(model: type[M], path: Path, data: Any) -> M:
    if not isinstance(data, dict):
        raise InventoryError(f"{path}: must be a YAML mapping (key: value lines)", file=str(path))
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise InventoryError(describe_validation_error(err, str(path)), file=str(path)) from None


def _local_path(base: Path, value: str | None) -> str | None:
    """Resolve a path on the machine running omni relative to the inventory directory."""
    if value is None:
        return None
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (base / path).absolute())


def _resolve_local_paths(host: Host, base: Path) -> Host:
    return host.model_copy(
        update={
            "identity": _local_path(base, host.identity),
            "acme": host.acme.model_copy(
                update={"ca_bundle": _local_path(base, host.acme.ca_bundle)}
            ),
            "health": host.health.model_copy(
                update={"ca_bundle": _local_path(base, host.health.ca_bundle)}
            ),
        }
    )


def load_hosts(inventory: Path) -> dict[str, Host]:
    """Parse ``hosts.yaml``; relative ``identity``/``ca_bundle`` paths resolve against the
    inventory directory. Raises :class:`InventoryError`."""
    path = inventory / HOSTS_FILE
    hosts_file = _parse(HostsFile, path, _read_yaml(path))
    hosts = {name: _resolve_local_paths(h, inventory) for name, h in hosts_file.hosts.items()}
    for name, host in hosts.items():
        for key, bundle in (("acme.ca_bundle", host.acme.ca_bundle),
                              ("health.ca_bundle", host.health.ca_bundle)):
            if bundle is not None and not Path(bundle).is_file():
                raise InventoryError(
                    f"{path}: hosts.{name}.{key}: no such file {bundle} (a CA bundle on "
                    "the machine running omni)",
                    file=str(path), field=f"hosts.{name}.{key}",
                )
    return hosts


def load_tenant(path: Path) -> Tenant:
    """Parse one ``tenants/<slug>.yaml``; the file name must be the slug. Raises
    :class:`InventoryError`."""
    tenant = _parse(Tenant, path, _read_yaml(path))
    if tenant.slug != path.stem:
        raise InventoryError(
            f"{path}: slug: must equal the file name without .yaml ({path.stem!r}), "
            f"got {tenant.slug!r}",
            file=str(path),
            field="slug",
        )
    return tenant


def collect_inventory(inventory: Path) -> InventoryReport:
    """Read every file, apply every rule, and return all problems instead of raising."""
    report = InventoryReport(path=inventory)
    if not inventory.is_dir():
        report.problems.append(f"{inventory}: inventory directory not found")
        return report
    try:
        report.hosts = load_hosts(inventory)
    except InventoryError as exc:
        report.problems.append(exc.message)
    tenants_dir = inventory / TENANTS_DIR
    files = sorted(tenants_dir.iterdir()) if tenants_dir.is_dir() else []
    seen: dict[str, Path] = {}
    for path in files:
        if path.name.startswith(".") or not path.is_file():
            continue
        if path.suffix != ".yaml":
            report.problems.append(f"{path}: tenant files must be named <slug>.yaml")
            continue
        try:
            tenant = load_tenant(path)
        except InventoryError as exc:
            report.problems.append(exc.message)
            continue
        seen[tenant.slug] = path
        report.tenants[tenant.slug] = tenant
    report.problems += cross_file_problems(
        report.hosts,
        report.tenants,
        hosts_file=str(inventory / HOSTS_FILE),
        file_of=lambda slug: str(seen[slug]),
    )
    return report


def load_inventory(inventory: Path) -> Inventory:
    """The validated inventory, or :class:`InventoryError` with the first problem (and how
    many more there are). Reads files only."""
    report = collect_inventory(inventory)
    if report.problems:
        more = len(report.problems) - 1
        hint = (
            f" (and {more} more problem{'s' if more > 1 else ''}: run `omni inventory check`)"
            if more
            else ""
        )
        raise InventoryError(report.problems[0] + hint, problems=len(report.problems))
    assert report.hosts is not None
    return Inventory(path=inventory, hosts=report.hosts, tenants=report.tenants)


def save_tenant(inventory: Path, tenant: Tenant) -> Path:
    """Write ``tenants/<slug>.yaml`` atomically (temp file in the same directory, fsync,
    rename; mode 0644: tenant files hold no secrets). Overwrites an existing file; returns
    its path. Fields left at their defaults are omitted so the file stays short."""
    path = tenant_path(inventory, tenant.slug)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = tenant.model_dump(mode="json", exclude_defaults=True)
    text = f"# tenant {tenant.slug}: one file per tenant (see README, inventory format)\n"
    text += yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=False)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{tenant.slug}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path
