"""Helpers for lab tests that create tenants through the real ``omni`` CLI."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests import lab as labmod

OMNI = [sys.executable, "-m", "omni.cli"]


@dataclass(frozen=True)
class Run:
    args: list[str]
    code: int
    stdout: str
    stderr: str

    def envelope(self) -> dict[str, Any]:
        lines = [line for line in self.stdout.splitlines() if line.strip()]
        assert len(lines) == 1, f"expected one JSON line on stdout, got: {self.stdout!r}"
        data = json.loads(lines[0])
        assert isinstance(data, dict)
        return data


def copy_lab_inventory(target: Path) -> Path:
    """A private copy of the lab's hosts.yaml with an empty tenants/ dir."""
    source = labmod.inventory_dir()
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(source / "hosts.yaml", target / "hosts.yaml")
    (target / "tenants").mkdir(exist_ok=True)
    return target


def unique_slug(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def omni(
    inventory: Path, *args: str, timeout: float = 600, env: dict[str, str] | None = None
) -> Run:
    argv = [*OMNI, "--inventory", str(inventory), *args]
    proc = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "NO_COLOR": "1", **(env or {})},
        cwd=labmod.REPO,
        check=False,
    )
    return Run(list(args), proc.returncode, proc.stdout, proc.stderr)


def start_omni(inventory: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*OMNI, "--inventory", str(inventory), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
        cwd=labmod.REPO,
    )


def host_snapshot(session: Any) -> dict[str, Any]:
    """Everything omni could change on a host: containers, roles, databases, and files
    (path, mode, sha256) under the state, vhost, certificate and webroot dirs. Lock
    bookkeeping (``*.lock``, ``*.holder``) and the audit log are left out: any concurrent
    run changes them."""
    host = session.host
    docker = session.docker()
    containers = sorted(
        (c.name, c.status, c.image_id, tuple(sorted(c.labels.items())))
        for c in docker.list_containers({})
    )
    with session.postgres() as conn:
        roles = sorted(r[0] for r in conn.execute("SELECT rolname FROM pg_roles").fetchall())
        databases = sorted(
            (str(r[0]), str(r[1]))
            for r in conn.execute("SELECT datname, datacl::text FROM pg_database").fetchall()
        )
    files: dict[str, tuple[str, str]] = {}
    for directory in (
        host.state_dir,
        host.nginx.sites_dir,
        host.nginx.certs_dir,
        host.acme.webroot,
    ):
        modes = session.transport.run(
            [
                "find",
                directory,
                "-type",
                "f",
                "-not",
                "-name",
                "*.lock",
                "-not",
                "-name",
                "*.holder*",
                "-not",
                "-name",
                "audit.jsonl",
                "-exec",
                "stat",
                "-c",
                "%a %n",
                "{}",
                "+",
            ],
            check=False,
        ).text()
        sums = session.transport.run(
            [
                "find",
                directory,
                "-type",
                "f",
                "-not",
                "-name",
                "*.lock",
                "-not",
                "-name",
                "*.holder*",
                "-not",
                "-name",
                "audit.jsonl",
                "-exec",
                "sha256sum",
                "{}",
                "+",
            ],
            check=False,
        ).text()
        digests = {line.split(None, 1)[1]: line.split()[0] for line in sums.splitlines()}
        for line in modes.splitlines():
            mode, path = line.split(" ", 1)
            files[path] = (mode, digests.get(path, ""))
    return {"containers": containers, "roles": roles, "databases": databases, "files": files}


def tenant_containers(session: Any, slug: str) -> list[str]:
    return sorted(c.name for c in session.docker().list_containers({"omni.tenant": slug}))


def strip_backups(inventory: Path) -> Path:
    """Remove every host's ``backup`` settings from ``inventory``'s hosts.yaml (in place):
    tenants there keep the local final dump on destroy."""
    import yaml

    path = inventory / "hosts.yaml"
    data = yaml.safe_load(path.read_text())
    for host in data["hosts"].values():
        host.pop("backup", None)
    path.write_text(yaml.safe_dump(data))
    return inventory
