#!/usr/bin/env python3
"""Write the lab inventory (``hosts.yaml``) and ``lab.env`` from the running lab's files.

Usage: inventory.py LAB_DIR RUN_DIR
Reads each host's pinned sshd public key under LAB_DIR/hosts/<name>/; writes
LAB_DIR/inventory/hosts.yaml, creates LAB_DIR/inventory/tenants/ (kept as is when present)
and writes LAB_DIR/lab.env. Rewrites both files atomically; idempotent. Stdlib only, so it
runs before the project's venv exists. The layout here must match lab/lab.sh.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

# name -> (address, app ports, redis ports). A tenant takes two app ports (live and
# standby): 400 tenants per host, room for the fleet bench's 300 across both.
HOSTS: dict[str, tuple[str, tuple[int, int], tuple[int, int]]] = {
    "dev": ("127.0.0.2", (9000, 9799), (6400, 6799)),
    "netcup": ("127.0.0.3", (10000, 10799), (7000, 7399)),
}
# Offsite backups: each host's restic repository lives on the other host (lab.sh backups_up).
PEERS = {"dev": "netcup", "netcup": "dev"}


def backup_entry(lab: Path, name: str) -> dict[str, Any]:
    peer = PEERS[name]
    bdir = lab / "hosts" / name / "backup"
    return {
        "repository": f"sftp:root@{HOSTS[peer][0]}:{lab / 'hosts' / peer / 'restic' / name}",
        "password_file": str(bdir / "restic.password"),
        "known_hosts": str(bdir / "known_hosts"),
        "identity": str(bdir / "id_ed25519"),
        "retention": {"daily": 7, "weekly": 4, "monthly": 12},
    }


def host_entry(lab: Path, run: Path, name: str) -> dict[str, Any]:
    address, app, redis = HOSTS[name]
    hdir = lab / "hosts" / name
    conf = str(hdir / "nginx" / "nginx.conf")
    host_key = (hdir / "ssh_host_ed25519_key.pub").read_text().strip()
    return {
        "address": address,
        "port": 22,
        "user": "root",
        "identity": str(lab / "ssh" / "id_ed25519"),
        "host_keys": [host_key],
        "app_ports": {"start": app[0], "end": app[1]},
        "redis_ports": {"start": redis[0], "end": redis[1]},
        "bind_address": address,
        "state_dir": str(hdir / "state"),
        "redis_image": "omni-lab/redis:7",
        "gateway_image": "omni-lab/gateway:1",
        "postgres": {
            "host": address,
            "port": 5432,
            "admin_user": "omni_admin",
            "admin_password_file": str(hdir / "postgres-admin.password"),
            "dump_dir": str(hdir / "backups"),
        },
        "docker": {"socket": str(run / name / "docker.sock"), "cli": "/usr/bin/docker"},
        "nginx": {
            "sites_dir": str(hdir / "nginx" / "sites"),
            "test_command": ["nginx", "-c", conf, "-t"],
            "reload_command": ["nginx", "-c", conf, "-s", "reload"],
            "listen_address": address,
            "http_port": 80,
            "https_port": 443,
            "certs_dir": str(hdir / "certs"),
        },
        "acme": {
            "directory_url": "https://127.0.0.1:14000/dir",
            "email": "ops@lab.test",
            "webroot": str(hdir / "acme-webroot"),
            "account_key_file": str(hdir / "state" / "acme-account.json"),
            "ca_bundle": str(lab / "pebble" / "cert.pem"),
        },
        # A broken release fails its gate after a minute rather than two (the lab's Medusa
        # answers within seconds; the production default stays 120 s).
        "health": {"ca_bundle": str(lab / "pebble" / "root.pem"), "deadline_seconds": 60},
        "backup": backup_entry(lab, name),
    }


def to_yaml(value: Any, indent: int = 0) -> list[str]:
    """Block-style YAML; scalars as JSON literals, which YAML reads the same way."""
    pad = "  " * indent
    lines: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, dict | list) and item:
                lines.append(f"{pad}{key}:")
                lines.extend(to_yaml(item, indent + 1))
            else:
                lines.append(f"{pad}{key}: {json.dumps(item)}")
    elif isinstance(value, list):
        for item in value:
            lines.append(f"{pad}- {json.dumps(item)}")
    return lines


def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def main(argv: list[str]) -> int:
    lab, run = Path(argv[1]).resolve(), Path(argv[2])
    inv = lab / "inventory"
    (inv / "tenants").mkdir(parents=True, exist_ok=True)
    data = {"version": 1, "hosts": {name: host_entry(lab, run, name) for name in HOSTS}}
    header = [
        "# The lab's inventory: written by `bash lab/lab.sh up`; do not edit (rewritten each run).",
        "# Host keys are the lab sshd's own keys, pinned.",
    ]
    write_atomic(inv / "hosts.yaml", "\n".join([*header, *to_yaml(data)]) + "\n")
    json_copy = lab / "inventory.json"  # the same data for checks without a YAML parser
    write_atomic(json_copy, json.dumps(data, indent=2) + "\n")

    env = {
        "OMNI_INVENTORY": str(inv),
        "OMNI_LAB_DIR": str(lab),
        "OMNI_LAB_RUN_DIR": str(run),
        "LAB_SSH_KEY": str(lab / "ssh" / "id_ed25519"),
        "LAB_KNOWN_HOSTS": str(lab / "ssh" / "known_hosts"),
        "LAB_PEBBLE_CERT": str(lab / "pebble" / "cert.pem"),
        "LAB_PEBBLE_ROOT": str(lab / "pebble" / "root.pem"),
        "LAB_ACME_DIRECTORY": "https://127.0.0.1:14000/dir",
        "LAB_PEBBLE_MGMT": "https://127.0.0.1:15000",
        "LAB_DNS": "127.0.0.1:8053",
    }
    for name, (address, _app, _redis) in HOSTS.items():
        up = name.upper()
        env[f"LAB_{up}_ADDRESS"] = address
        env[f"LAB_{up}_DOCKER_HOST"] = f"unix://{run / name / 'docker.sock'}"
        env[f"LAB_{up}_NGINX_CONF"] = str(lab / "hosts" / name / "nginx" / "nginx.conf")
        env[f"LAB_{up}_PG_PASSWORD_FILE"] = str(lab / "hosts" / name / "postgres-admin.password")
    lines = ["# Lab environment: `. .lab/lab.env` (written by lab/lab.sh up)."]
    lines += [f"export {key}={json.dumps(value)}" for key, value in env.items()]
    write_atomic(lab / "lab.env", "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
