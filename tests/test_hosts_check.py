"""`omni hosts check` against the lab's real servers, and against a host with no sshd."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from omni.inventory.models import HostsFile
from omni.usecases.hosts_check import CHECKS, parse_df
from tests import lab as labmod

REPO = Path(__file__).resolve().parent.parent
# Nothing listens on this loopback address: the lab binds 127.0.0.2 and 127.0.0.3 only.
DOWN_ADDRESS = "127.0.0.4"


def hosts_check(inventory: Path, *hosts: str) -> tuple[int, dict[str, Any], str]:
    proc = subprocess.run(
        [sys.executable, "-m", "omni.cli", "--json", "--inventory", str(inventory),
         "hosts", "check", *hosts],
        capture_output=True, text=True, timeout=180, check=False, cwd=REPO,
    )
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def temp_inventory(tmp_path: Path, extra: dict[str, dict[str, Any]] | None = None) -> Path:
    """The lab's hosts.yaml (plus ``extra`` hosts) in a fresh inventory with no tenants, so
    tenants other tests leave in the lab inventory cannot affect this test."""
    raw = yaml.safe_load((labmod.inventory_dir() / "hosts.yaml").read_text())
    raw["hosts"].update(extra or {})
    inv = tmp_path / "inventory"
    inv.mkdir()
    (inv / "hosts.yaml").write_text(yaml.safe_dump(raw))
    return inv


def rows(envelope: dict[str, Any], host: str) -> dict[str, dict[str, Any]]:
    [entry] = [h for h in envelope["data"]["hosts"] if h["name"] == host]
    return {row["check"]: row for row in entry["checks"]}


@pytest.mark.lab
def test_both_lab_hosts_pass_every_check(lab_hosts: HostsFile, tmp_path: Path) -> None:
    code, envelope, stderr = hosts_check(temp_inventory(tmp_path))
    failed = [(h["name"], c["check"], c["detail"]) for h in envelope["data"]["hosts"]
              for c in h["checks"] if not c["ok"]]
    assert code == 0, (failed, stderr)
    assert envelope["status"] == "success"
    assert [h["name"] for h in envelope["data"]["hosts"]] == ["dev", "netcup"]
    for name in ("dev", "netcup"):
        checks = rows(envelope, name)
        assert list(checks) == list(CHECKS)
        assert checks["docker"]["detail"].startswith("engine ")
        assert checks["postgres"]["detail"].startswith("PostgreSQL 15")
        assert "successful" in checks["nginx"]["detail"]
        assert "GiB free" in checks["disk"]["detail"]


@pytest.mark.lab
def test_a_host_without_sshd_is_reported_unreachable_and_others_still_run(
    lab_hosts: HostsFile, tmp_path: Path
) -> None:
    raw_dev = yaml.safe_load((labmod.inventory_dir() / "hosts.yaml").read_text())["hosts"]["dev"]
    ghost = {**raw_dev, "address": DOWN_ADDRESS}
    inv = temp_inventory(tmp_path, {"ghost": ghost})

    code, envelope, stderr = hosts_check(inv, "ghost", "dev")

    assert code == 1
    assert envelope["status"] == "error"
    assert envelope["errors"][0]["code"] == "check_failed"
    assert "ghost/reachable" in envelope["errors"][0]["message"]
    assert stderr.splitlines()[-1].startswith("error[check_failed]: ")
    assert "Traceback" not in stderr
    ghost_rows = rows(envelope, "ghost")
    assert ghost_rows["reachable"]["status"] == "fail"
    assert ghost_rows["reachable"]["code"] == "host_unreachable"
    assert DOWN_ADDRESS in ghost_rows["reachable"]["detail"]
    for check in ("host_key", "login", "docker", "nginx", "postgres", "disk"):
        assert ghost_rows[check]["status"] == "skip"
    # The healthy host's rows are all there and all pass.
    dev_rows = rows(envelope, "dev")
    assert list(dev_rows) == list(CHECKS)
    assert all(row["ok"] for row in dev_rows.values()), dev_rows


@pytest.mark.lab
def test_a_host_presenting_an_unpinned_key_fails_the_host_key_row(
    lab_hosts: HostsFile, tmp_path: Path
) -> None:
    raw_dev = yaml.safe_load((labmod.inventory_dir() / "hosts.yaml").read_text())["hosts"]["dev"]
    impostor = {**raw_dev, "host_keys": [labmod.fresh_public_key("ssh-ed25519")]}
    inv = temp_inventory(tmp_path, {"impostor": impostor})

    code, envelope, _ = hosts_check(inv, "impostor")

    assert code == 1
    checks = rows(envelope, "impostor")
    assert checks["reachable"]["ok"]
    assert checks["host_key"]["status"] == "fail"
    assert checks["host_key"]["code"] == "host_key_rejected"
    assert "SHA256:" in checks["host_key"]["detail"]
    assert checks["login"]["status"] == "skip"
    assert checks["docker"]["status"] == "skip"


@pytest.mark.lab
def test_human_output_is_a_table_with_a_row_per_check(
    lab_hosts: HostsFile, tmp_path: Path
) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "omni.cli", "--inventory", str(temp_inventory(tmp_path)),
         "hosts", "check", "netcup"],
        capture_output=True, text=True, timeout=180, check=False, cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for check in CHECKS:
        assert f" {check} " in proc.stdout
    assert "netcup" in proc.stdout
    assert "dev " not in proc.stdout


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("Filesystem 1024-blocks Used Available Capacity Mounted on\n"
         "/dev/sda1 100000 25000 75000 25% /\n", (75000 * 1024, 25, "/")),
        ("Filesystem 1024-blocks Used Available Capacity Mounted on\n"
         "overlay 10 9 1 90% /var/lib/omni\n", (1024, 90, "/var/lib/omni")),
    ],
)
def test_parse_df(output: str, expected: tuple[int, int, str]) -> None:
    assert parse_df(output) == expected


def test_parse_df_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="df"):
        parse_df("df: /nope: No such file or directory\n")
