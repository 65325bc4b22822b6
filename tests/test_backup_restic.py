"""Pure parts of the backups: restic argv, tags, JSON parsing, the retention policy, row
count comparison, the inventory model and the CLI's refusals (no server involved)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from omni.backup import ops, restic
from omni.backup.counts import CountsRecord, compare_counts
from omni.errors import InvalidInput, StepFailed
from omni.inventory.models import BackupRetention, BackupSettings
from omni.transport.base import CommandResult
from tests.factories import make_host
from tests.test_cli_inventory import omni

SFTP = {
    "repository": "sftp:root@127.0.0.3:/srv/restic/dev",
    "password_file": "/etc/omni/restic.password",
    "known_hosts": "/etc/omni/backup_known_hosts",
    "identity": "/etc/omni/backup_id_ed25519",
}


def settings(**overrides: object) -> BackupSettings:
    return BackupSettings.model_validate({**SFTP, **overrides})


# -- argv -------------------------------------------------------------------------------


def test_restic_argv_reads_the_password_from_its_file_and_pins_the_sftp_host_key() -> None:
    argv = restic.restic_argv(settings(), ["snapshots", "--json"])
    assert argv[:5] == ["env", "RESTIC_PASSWORD_FILE=/etc/omni/restic.password", "restic",
                        "--repo", "sftp:root@127.0.0.3:/srv/restic/dev"]
    assert argv[-2:] == ["snapshots", "--json"]
    option = argv[argv.index("--option") + 1]
    assert option.startswith("sftp.command=ssh ")
    ssh = option.removeprefix("sftp.command=").split(" ")
    assert ssh[-3:] == ["root@127.0.0.3", "-s", "sftp"]
    assert "StrictHostKeyChecking=yes" in ssh and "BatchMode=yes" in ssh
    assert "UserKnownHostsFile=/etc/omni/backup_known_hosts" in ssh
    assert ssh[1:3] == ["-i", "/etc/omni/backup_id_ed25519"]
    assert "accept-new" not in option and "StrictHostKeyChecking=no" not in option


@pytest.mark.parametrize(("repository", "expected"), [
    ("sftp:root@127.0.0.3:/srv/r", ("root", "127.0.0.3", 22)),
    ("sftp:backup.example.com:/srv/r", (None, "backup.example.com", 22)),
    ("sftp://u123@u123.your-storagebox.de:23//backups", ("u123", "u123.your-storagebox.de", 23)),
    ("sftp://root@127.0.0.3:1//srv/r", ("root", "127.0.0.3", 1)),
])
def test_sftp_targets(repository: str, expected: tuple[str | None, str, int]) -> None:
    target = restic.sftp_target(repository)
    assert target is not None and (target.user, target.host, target.port) == expected


def test_other_backends_get_no_ssh_and_no_unknown_option() -> None:
    s = settings(repository="s3:https://s3.example.com/bucket/omni", known_hosts=None,
                 identity=None)
    assert restic.sftp_target(s.repository) is None
    argv = restic.restic_argv(s, ["check"])
    assert "--option" not in argv and argv[-1] == "check"


def test_without_known_hosts_ssh_still_refuses_unknown_keys() -> None:
    ssh = restic.ssh_command(settings(known_hosts=None, identity=None))
    assert ssh is not None and "StrictHostKeyChecking=yes" in ssh
    assert not any(part.startswith("UserKnownHostsFile") for part in ssh)


def test_backup_args_tags_and_faked_time() -> None:
    tags = restic.tags_for(restic.DUMP_KIND, "acme", "dev", "b1",
                           {"image": "omni-lab/medusa:v1", "release": "none"})
    assert tags == ["omni", "kind=dump", "tenant=acme", "host=dev", "backup=b1",
                    "image=omni-lab/medusa:v1", "release=none"]
    args = restic.backup_args("acme.dump", tags, "dev", datetime(2026, 1, 2, 3, 4, 5))
    assert args[:7] == ["backup", "--json", "--quiet", "--stdin", "--stdin-filename",
                        "acme.dump", "--host"]
    assert args.count("--tag") == len(tags)
    assert args[-2:] == ["--time", "2026-01-02 03:04:05"]


def test_a_tag_value_with_a_comma_or_space_is_refused() -> None:
    with pytest.raises(StepFailed):
        restic.tags_for("dump", "acme", "dev", "b1", {"image": "a,b"})
    with pytest.raises(StepFailed):
        restic.tags_for("dump", "acme", "dev", "b1", {"release": "a b"})


def test_forget_and_check_args() -> None:
    retention = BackupRetention(daily=7, weekly=4, monthly=12)
    assert restic.forget_policy_args("acme", retention, dry_run=True) == [
        "forget", "--json", "--tag", "tenant=acme", "--keep-daily", "7", "--keep-weekly", "4",
        "--keep-monthly", "12", "--dry-run"]
    assert restic.check_args(10) == ["check", "--read-data-subset=10%"]
    assert restic.check_args(2.5) == ["check", "--read-data-subset=2.5%"]
    assert restic.dump_args("0f3c9a1e", "acme.dump") == ["dump", "0f3c9a1e", "/acme.dump"]


def test_pipe_argv_passes_both_commands_as_arguments_not_shell_text() -> None:
    argv = restic.pipe_argv(["pg_dump", "x y"], ["restic", "backup"])
    assert argv[:2] == ["bash", "-c"] and argv[3:] == ["omni-pipe", "2", "pg_dump", "x y",
                                                        "restic", "backup"]
    assert restic.parse_pipe_status(b"noise\nomni-pipe 1 0\n", 1) == (1, 0)
    assert restic.parse_pipe_status(b"", 137) == (137, 137)


# -- parsing ----------------------------------------------------------------------------

SNAPSHOTS = json.dumps([
    {"time": "2026-12-02T04:54:46.31947465Z", "paths": ["/acme.dump"], "hostname": "dev",
     "tags": ["omni", "kind=dump", "tenant=acme", "backup=b2", "release=r1",
              "image=omni-lab/medusa:v1"],
     "id": "f40d8d4b" + "0" * 56, "short_id": "f40d8d4b"},
    {"time": "2024-01-01T10:00:00+01:00", "paths": ["/acme.dump"], "hostname": "dev",
     "tags": ["omni", "kind=dump", "tenant=acme", "backup=b1"],
     "id": "d2ce69fc" + "0" * 56, "short_id": "d2ce69fc"},
    {"time": "2024-01-01T10:00:01+01:00", "paths": ["/acme.counts.json"], "hostname": "dev",
     "tags": ["omni", "kind=counts", "tenant=acme", "backup=b1", "bytes=1234"],
     "id": "aaaa0001" + "0" * 56, "short_id": "aaaa0001"},
])


def test_parse_snapshots_oldest_first_with_tags() -> None:
    snaps = restic.parse_snapshots(SNAPSHOTS)
    assert [s.short_id for s in snaps] == ["d2ce69fc", "aaaa0001", "f40d8d4b"]
    assert snaps[0].time == datetime(2024, 1, 1, 9, 0, tzinfo=UTC)
    assert snaps[2].time.microsecond == 319474
    assert snaps[2].tags["release"] == "r1" and snaps[2].kind == "dump"


def test_pair_entries_matches_records_by_backup_id() -> None:
    entries = ops.pair_entries(restic.parse_snapshots(SNAPSHOTS))
    assert [e.dump.short_id for e in entries] == ["d2ce69fc", "f40d8d4b"]
    assert entries[0].record is not None and entries[0].size == 1234
    assert entries[1].record is None and entries[1].size is None
    assert ops.choose(entries, None, "acme").dump.short_id == "f40d8d4b"
    assert ops.choose(entries, "d2ce", "acme").dump.short_id == "d2ce69fc"
    with pytest.raises(StepFailed):
        ops.choose(entries, "ffff", "acme")
    with pytest.raises(StepFailed, match="no backup"):
        ops.choose([], None, "acme")


def test_parse_backup_summary_and_forget() -> None:
    out = ('{"message_type":"status","percent_done":0}\n'
           '{"message_type":"summary","total_bytes_processed":6,"snapshot_id":"f40d8d4b"}\n')
    assert restic.parse_backup_summary(out) == ("f40d8d4b", 6)
    with pytest.raises(StepFailed, match="no summary"):
        restic.parse_backup_summary('{"message_type":"status"}\n')
    forget = json.dumps([{"keep": [{"id": "a1"}], "remove": [{"id": "b2"}, {"id": "c3"}]},
                         {"keep": [{"id": "d4"}], "remove": None}])
    assert restic.parse_forget(forget) == (["a1", "d4"], ["b2", "c3"])


def test_locked_repository_is_retried_then_reported() -> None:
    locked = CommandResult(("restic",), 1, b"", b"Fatal: unable to create lock in backend: "
                           b"repository is already locked exclusively by PID 1\n")
    fine = CommandResult(("restic",), 0, b"ok", b"")
    answers = [locked, locked, fine]
    slept: list[float] = []
    result = restic.retry_locked(lambda: answers.pop(0), what="restic x", sleep=slept.append)
    assert result.ok and len(slept) == 2
    with pytest.raises(StepFailed, match=r"restic x failed: .*already locked"):
        restic.retry_locked(lambda: locked, what="restic x", sleep=slept.append,
                            lock_retry_seconds=0)


# -- the policy -------------------------------------------------------------------------


def _times(*offsets_days: float) -> list[datetime]:
    base = datetime(2026, 3, 31, 22, 0, tzinfo=UTC)
    return [base - timedelta(days=d) for d in offsets_days]


@pytest.mark.parametrize(("offsets", "policy", "kept"), [
    # one per day for the last 3 distinct days; the newest of each day
    ((0, 0.1, 1, 2, 3), (3, 0, 0), {0, 2, 3}),
    # weekly: the newest of each of the last 2 ISO weeks (2026-03-31 is a Tuesday)
    ((0, 1, 2, 3, 8, 9), (0, 2, 0), {0, 2}),
    # monthly: newest of March, February, January
    ((0, 10, 31, 40, 60, 90), (0, 0, 3), {0, 2, 4}),
    # rules add up (3/30 is a Monday: the second week is 3/29's); the newest always stays
    ((0, 1, 2, 3, 4, 7, 14, 35, 70), (2, 2, 3), {0, 1, 2, 7, 8}),
])
def test_kept_by_policy(offsets: tuple[float, ...], policy: tuple[int, int, int],
                        kept: set[int]) -> None:
    retention = BackupRetention(daily=policy[0], weekly=policy[1], monthly=policy[2])
    assert restic.kept_by_policy(_times(*offsets), retention) == kept


def test_policy_buckets_in_the_snapshots_own_time_zone() -> None:
    plus2 = timezone(timedelta(hours=2))
    # Same UTC day, but different local days at +02:00.
    times = [datetime(2026, 3, 30, 23, 30, tzinfo=plus2), datetime(2026, 3, 31, 0, 30,
                                                                    tzinfo=plus2)]
    assert restic.kept_by_policy(times, BackupRetention(daily=2, weekly=0, monthly=0)) == {0, 1}


# -- counts -----------------------------------------------------------------------------


def test_compare_counts_names_every_difference() -> None:
    recorded = {"public.a": 3, "public.b": 0, "public.c": 7}
    assert compare_counts(recorded, dict(recorded)) == []
    problems = compare_counts(recorded, {"public.a": 2, "public.b": 0, "public.x": 1})
    assert problems == [
        "table public.a: 2 row(s) restored, 3 recorded at dump time",
        "table public.c is missing after restore",
        "table public.x was not in the dump's record",
    ]


def test_counts_record_round_trips_and_rejects_other_formats() -> None:
    record = CountsRecord("acme", "dev", "b1", "f40d8d4b", 1234, "2026-12-02T04:54:46+00:00",
                          "omni-lab/medusa:v1", "none", {"public.b": 2, "public.a": 1})
    again = CountsRecord.from_json(record.to_json())
    assert again == record and json.loads(record.to_json())["bytes"] == 1234
    with pytest.raises(StepFailed, match="not readable"):
        CountsRecord.from_json(b'{"format": 2}')
    with pytest.raises(StepFailed):
        CountsRecord.from_json(b"garbage")


# -- inventory and CLI ------------------------------------------------------------------


def test_backup_settings_model() -> None:
    s = settings()
    assert s.retention == BackupRetention(daily=7, weekly=4, monthly=12)
    with pytest.raises(ValidationError, match="password"):
        settings(repository="rest:https://user:secret@backup.example.com/omni")
    with pytest.raises(ValidationError):
        settings(repository="sftp:root@host:/a b")
    with pytest.raises(ValidationError, match="at least one"):
        BackupRetention(daily=0, weekly=0, monthly=0)
    with pytest.raises(ValidationError):
        settings(password_file="relative/path")
    assert make_host().backup is None
    assert make_host(backup=SFTP).backup == s


def test_a_host_without_backup_settings_is_refused_with_one_line() -> None:
    with pytest.raises(InvalidInput, match="no `backup` settings"):
        restic.require_backup(make_host())
    for args in (["backup", "acme-outdoor"], ["backup", "run", "--all"],
                 ["backup", "verify", "acme-outdoor"], ["backup", "list", "acme-outdoor"],
                 ["backup", "restore", "acme-outdoor", "--yes"]):
        proc = omni("--inventory", "inventory", *args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stderr.startswith("error[invalid_input]: host ")
        assert "no `backup` settings" in proc.stderr and proc.stderr.count("\n") == 1


def test_backup_needs_slugs_or_all() -> None:
    proc = omni("--inventory", "inventory", "backup", "run")
    assert proc.returncode == 2 and "--all" in proc.stderr
    proc = omni("--inventory", "inventory", "backup", "restore", "acme-outdoor",
                "--snapshot", "not-hex", "--yes")
    assert proc.returncode == 2
