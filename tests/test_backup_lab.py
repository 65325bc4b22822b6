"""Offsite backups on the lab: ``omni backup``, ``list``, ``verify``, ``restore``, retention
and the final backup of ``tenant destroy``.

Two real tenants (one on dev, one on netcup) are created once for the module; dev's
repository lives on netcup (``sftp:root@127.0.0.3:...``) and netcup's on dev. Tests run in
file order; each leaves the repositories sound (a damaged pack is put back).
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from omni.backup import ops, restic
from omni.backup.counts import CountsRecord
from omni.errors import StepFailed
from omni.hosts.session import HostSession
from omni.inventory.models import BackupRetention, Host, HostsFile
from tests import tenant_lab as tl

pytestmark = pytest.mark.lab

IMAGE_V1 = "omni-lab/medusa:v1"
MARKER = f"omni-plaintext-marker-{secrets.token_hex(8)}"


def _db(slug: str) -> str:
    return "tenant_" + slug.replace("-", "_")


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, lab_hosts: HostsFile) -> Iterator[
    tuple[Path, dict[str, str]]
]:
    """An inventory with two tenants: slug -> host (dev, netcup)."""
    for host in lab_hosts.hosts.values():
        assert host.backup is not None, f"lab host {host.name} has no backup settings"
    inventory = tl.copy_lab_inventory(tmp_path_factory.mktemp("backup"))
    tenants = {tl.unique_slug("bk"): "dev", tl.unique_slug("bk"): "netcup"}
    procs = [
        tl.start_omni(inventory, "tenant", "create", slug, "--host", host,
                      "--domain", f"{slug}.{host}.lab.test", "--image", IMAGE_V1)
        for slug, host in tenants.items()
    ]
    outputs = [p.communicate(timeout=900) for p in procs]
    try:
        for proc, (_, err) in zip(procs, outputs, strict=True):
            assert proc.returncode == 0, err
        yield inventory, tenants
    finally:
        for slug, host in tenants.items():
            tl.omni(inventory, "tenant", "destroy", slug, "--yes")
            with HostSession(lab_hosts.hosts[host]) as s, s.postgres() as conn:
                # Databases a restore kept or left behind.
                for (name,) in conn.execute(
                    "SELECT datname FROM pg_database WHERE datname LIKE %s",
                    (_db(slug) + "\\_%",),
                ).fetchall():
                    from psycopg import sql

                    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                        sql.Identifier(str(name))))


def _slug_on(pair: tuple[Path, dict[str, str]], host: str) -> str:
    return next(slug for slug, h in pair[1].items() if h == host)


def _sql(host: Host, slug: str, query: str, params: tuple[Any, ...] = (),
         database: str | None = None) -> list[tuple[Any, ...]]:
    with HostSession(host) as s, s.connect_as(
        host.postgres.admin_user, s.admin_password(), database or _db(slug)
    ) as conn:
        cursor = conn.execute(query, params)
        return list(cursor.fetchall()) if cursor.description else []


def _repo_dir(host: Host) -> Path:
    """The directory (on the peer, which is this same machine) holding ``host``'s repository."""
    assert host.backup is not None
    return Path(host.backup.repository.split(":", 2)[2])


def _by_tenant(run: tl.Run) -> dict[str, dict[str, Any]]:
    return {row["tenant"]: row for row in run.envelope()["data"]["tenants"]}


def test_backup_puts_encrypted_snapshots_in_the_other_hosts_repository(
    pair: tuple[Path, dict[str, str]], lab_hosts: HostsFile,
) -> None:
    inventory, tenants = pair
    for slug, host in tenants.items():
        _sql(lab_hosts.hosts[host], slug,
             "CREATE TABLE omni_marker (id serial PRIMARY KEY, note text NOT NULL)")
        _sql(lab_hosts.hosts[host], slug, "INSERT INTO omni_marker (note) VALUES (%s)",
             (f"{MARKER}-{slug}",))
    run = tl.omni(inventory, "--json", "backup", *tenants)
    assert run.code == 0, run.stderr
    rows = _by_tenant(run)
    for slug in tenants:
        assert rows[slug]["status"] == "ok", rows[slug]
        assert rows[slug]["snapshot"] and rows[slug]["bytes"] > 0 and rows[slug]["entries"] > 0
        assert rows[slug]["tables"] > 50  # Medusa's schema, counted at dump time
    peers = {"dev": "netcup", "netcup": "dev"}
    for slug, host in tenants.items():
        settings = lab_hosts.hosts[host].backup
        assert settings is not None
        peer = lab_hosts.hosts[peers[host]]
        # Offsite: the repository is reached over SFTP on the other host's address and
        # lives in that host's directory.
        assert settings.repository.startswith(f"sftp:root@{peer.address}:")
        repo = _repo_dir(lab_hosts.hosts[host])
        assert str(repo).startswith(str(Path(peer.state_dir).parent))
        assert any((repo / "snapshots").iterdir()) and any((repo / "data").rglob("*"))
        listed = tl.omni(inventory, "--json", "backup", "list", slug)
        assert listed.code == 0, listed.stderr
        snapshots = listed.envelope()["data"]["snapshots"]
        assert [s["snapshot"] for s in snapshots][-1] == rows[slug]["snapshot"]
        assert snapshots[-1]["size"] == rows[slug]["bytes"]
        assert snapshots[-1]["release"] and snapshots[-1]["image"] == IMAGE_V1
        human = tl.omni(inventory, "backup", "list", slug)
        assert human.code == 0 and rows[slug]["snapshot"] in human.stdout
        # Encrypted: no plaintext of the tenant's data anywhere in the repository's files.
        assert _sql(lab_hosts.hosts[host], slug, "SELECT note FROM omni_marker")
        found = subprocess.run(["grep", "-r", "-a", "-F", "-l", MARKER, str(repo)],
                                  capture_output=True, check=False)
        assert found.returncode == 1, found.stdout


def test_restore_brings_a_deleted_row_back_and_keeps_the_replaced_database(
    pair: tuple[Path, dict[str, str]], lab_hosts: HostsFile,
) -> None:
    inventory, _ = pair
    slug = _slug_on(pair, "dev")
    host = lab_hosts.hosts["dev"]
    note = f"keep-me-{secrets.token_hex(4)}"
    _sql(host, slug, "INSERT INTO omni_marker (note) VALUES (%s)", (note,))
    backed = tl.omni(inventory, "--json", "backup", slug)
    assert backed.code == 0, backed.stderr
    snapshot = _by_tenant(backed)[slug]["snapshot"]
    _sql(host, slug, "DELETE FROM omni_marker WHERE note = %s", (note,))

    refused = tl.omni(inventory, "backup", "restore", slug)
    assert refused.code == 2 and "--yes" in refused.stderr
    looked = tl.omni(inventory, "--json", "backup", "restore", slug, "--dry-run")
    assert looked.code == 0, looked.stderr
    assert looked.envelope()["data"]["snapshot"] == snapshot
    assert not _sql(host, slug, "SELECT 1 FROM omni_marker WHERE note = %s", (note,))

    run = tl.omni(inventory, "--json", "backup", "restore", slug, "--snapshot", snapshot,
                  "--yes")
    assert run.code == 0, run.stderr
    data = run.envelope()["data"]
    assert data["database"] == _db(slug) and data["replaced"].startswith(_db(slug) + "_r")
    assert _sql(host, slug, "SELECT 1 FROM omni_marker WHERE note = %s", (note,))
    # The replaced database is kept, as it was before the restore.
    assert not _sql(host, slug, "SELECT 1 FROM omni_marker WHERE note = %s", (note,),
                    database=data["replaced"])
    health = tl.omni(inventory, "health-check", slug)
    assert health.code == 0, health.stdout + health.stderr
    # ... until the next successful backup, which drops it.
    again = tl.omni(inventory, "--json", "backup", slug)
    assert again.code == 0, again.stderr
    assert _by_tenant(again)[slug]["dropped_replaced_databases"] == [data["replaced"]]
    with pytest.raises(StepFailed, match="does not exist"):
        _sql(host, slug, "SELECT 1", database=data["replaced"])


def test_verify_passes_on_good_backups(
    pair: tuple[Path, dict[str, str]],
) -> None:
    inventory, tenants = pair
    run = tl.omni(inventory, "--json", "backup", "verify", *tenants, "--read-data-subset", "100")
    assert run.code == 0, run.stderr
    rows = _by_tenant(run)
    assert all(rows[s]["status"] == "ok" and rows[s]["problems"] == [] for s in tenants), rows
    assert all(r["ok"] for r in run.envelope()["data"]["repositories"])


def test_verify_catches_row_counts_that_differ_from_the_record(
    pair: tuple[Path, dict[str, str]], lab_hosts: HostsFile,
) -> None:
    inventory, _ = pair
    slug = _slug_on(pair, "dev")
    host = lab_hosts.hosts["dev"]
    settings = host.backup
    assert settings is not None
    with HostSession(host) as s:
        entry = ops.list_entries(s, slug)[-1]
        record = ops.read_record(s, slug, entry)
        tables = dict(record.tables)
        tables["public.omni_marker"] += 5
        bogus = CountsRecord(**{**record.__dict__, "tables": tables})
        assert entry.record is not None
        saved = restic.run_restic(
            s.transport, settings,
            restic.backup_args(restic.counts_filename(slug),
                               restic.tags_for(restic.COUNTS_KIND, slug, "dev",
                                               entry.dump.tags["backup"],
                                               {"dump": entry.dump.short_id,
                                                "bytes": entry.record.tags["bytes"]}),
                               "dev"),
            stdin=bogus.to_json(),
        )
        bogus_id, _ = restic.parse_backup_summary(saved.stdout)
        try:
            run = tl.omni(inventory, "--json", "backup", "verify", slug)
            assert run.code == 1, run.stderr
            assert f"{slug}@dev" in run.stderr
            row = _by_tenant(run)[slug]
            assert row["status"] == "failed"
            assert any("public.omni_marker" in p and "recorded" in p for p in row["problems"])
        finally:
            restic.run_restic(s.transport, settings, ["forget", bogus_id])
    again = tl.omni(inventory, "backup", "verify", slug)
    assert again.code == 0, again.stderr


def test_verify_catches_a_damaged_pack_file(
    pair: tuple[Path, dict[str, str]], lab_hosts: HostsFile,
) -> None:
    inventory, _ = pair
    slug = _slug_on(pair, "netcup")
    packs = [p for p in (_repo_dir(lab_hosts.hosts["netcup"]) / "data").rglob("*")
             if p.is_file()]
    assert packs
    originals = {p: p.read_bytes() for p in packs}
    try:
        for pack, data in originals.items():
            middle = len(data) // 2
            damaged = data[:middle] + bytes(b ^ 0xFF for b in data[middle:middle + 64]) \
                + data[middle + 64:]
            pack.chmod(0o600)
            pack.write_bytes(damaged)
        run = tl.omni(inventory, "--json", "backup", "verify", slug, "--read-data-subset",
                      "100")
        assert run.code == 1, run.stderr
        assert f"{slug}@netcup" in run.stderr
        row = _by_tenant(run)[slug]
        assert row["status"] == "failed" and row["problems"], row
        assert not run.envelope()["data"]["repositories"][0]["ok"]
    finally:
        for pack, data in originals.items():
            pack.write_bytes(data)
    again = tl.omni(inventory, "backup", "verify", slug, "--read-data-subset", "100")
    assert again.code == 0, again.stderr


def test_retention_keeps_exactly_what_the_policy_says(lab_hosts: HostsFile) -> None:
    host = lab_hosts.hosts["dev"]
    settings = host.backup
    assert settings is not None
    slug = tl.unique_slug("ret")
    policy = BackupRetention(daily=3, weekly=2, monthly=3)
    base = datetime(2026, 3, 31, 22, 0, tzinfo=UTC)
    times = sorted({base - timedelta(days=d, hours=h) for d, h in (
        (0, 0), (0, 5), (1, 0), (2, 0), (3, 0), (4, 0), (6, 0), (9, 0), (13, 0), (20, 0),
        (33, 0), (40, 0), (64, 0), (95, 0), (130, 0))})
    with HostSession(host) as s:
        try:
            made: dict[str, datetime] = {}
            for when in times:
                saved = restic.run_restic(
                    s.transport, settings,
                    restic.backup_args(restic.dump_filename(slug),
                                       restic.tags_for(restic.DUMP_KIND, slug, "dev", "bfake"),
                                       "dev", when),
                    stdin=f"{slug} {when.isoformat()}".encode(),
                )
                made[restic.parse_backup_summary(saved.stdout)[0]] = when
            newest = max(made, key=lambda sid: made[sid])
            oldest = min(made, key=lambda sid: made[sid])
            # Protecting a snapshot the policy drops: refused, nothing removed.
            with pytest.raises(StepFailed, match="just taken"):
                ops.apply_retention(s, slug, [oldest], policy)
            assert len(_snapshots(s, settings, slug)) == len(times)

            kept = ops.apply_retention(s, slug, [newest], policy)
            left = {snap.time for snap in _snapshots(s, settings, slug)}
            expected = {times[i] for i in restic.kept_by_policy(times, policy)}
            assert left == expected
            assert kept.kept == len(expected) and len(kept.removed) == len(times) - len(expected)
            assert max(times) in left
        finally:
            ids = [snap.id for snap in _snapshots(s, settings, slug)]
            if ids:
                restic.run_restic(s.transport, settings, ["forget", *ids])


def _snapshots(s: HostSession, settings: Any, slug: str) -> list[restic.Snapshot]:
    listed = restic.run_restic(s.transport, settings, restic.snapshots_args(slug))
    return restic.parse_snapshots(listed.stdout)


def test_destroy_refuses_and_touches_nothing_when_the_repository_is_unreachable(
    pair: tuple[Path, dict[str, str]], lab_hosts: HostsFile, tmp_path: Path,
) -> None:
    inventory, _ = pair
    slug = _slug_on(pair, "dev")
    host = lab_hosts.hosts["dev"]
    dead = tmp_path / "dead"
    (dead / "tenants").mkdir(parents=True)
    (dead / "tenants" / f"{slug}.yaml").write_text(
        (inventory / "tenants" / f"{slug}.yaml").read_text())
    data = yaml.safe_load((inventory / "hosts.yaml").read_text())
    # Port 1 of the peer: nothing listens there.
    data["hosts"]["dev"]["backup"]["repository"] = f"sftp://root@127.0.0.3:1/{_repo_dir(host)}"
    (dead / "hosts.yaml").write_text(yaml.safe_dump(data))
    with HostSession(host) as s:
        before = tl.tenant_containers(s, slug)
        states = {c.name: c.status for c in s.docker().list_containers({"omni.tenant": slug})}
    run = tl.omni(dead, "--json", "tenant", "destroy", slug, "--yes")
    assert run.code == 3, run.stderr
    assert "backup" in run.stderr
    assert (dead / "tenants" / f"{slug}.yaml").exists()
    with HostSession(host) as s:
        assert tl.tenant_containers(s, slug) == before
        assert {c.name: c.status for c in s.docker().list_containers(
            {"omni.tenant": slug})} == states
    assert _sql(host, slug, "SELECT count(*) FROM omni_marker")
    health = tl.omni(inventory, "health-check", slug)
    assert health.code == 0, health.stdout + health.stderr


def test_destroy_backs_up_offsite_and_reads_it_back_before_removing(
    pair: tuple[Path, dict[str, str]], lab_hosts: HostsFile,
) -> None:
    inventory, tenants = pair
    for slug, host_name in tenants.items():
        host = lab_hosts.hosts[host_name]
        run = tl.omni(inventory, "--json", "tenant", "destroy", slug, "--yes")
        assert run.code == 0, run.stderr
        data = run.envelope()["data"]
        assert data["backup"]["snapshot"] and data["backup"]["entries"] > 0
        assert data["backup"]["snapshot"] in data["final_backup"]
        with HostSession(host) as s:
            entries = ops.list_entries(s, slug)
            assert entries[-1].dump.short_id == data["backup"]["snapshot"]
            verified = ops.verify_entry(s, slug, entries[-1])
            assert verified.ok, verified.problems
            with s.postgres() as conn:
                # The live database, any a restore kept (dev's tenant has one) and the role.
                assert conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s",
                                    (_db(slug) + "%",)).fetchall() == []
                assert conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s",
                                    (_db(slug),)).fetchone() is None
