"""restic, as omni drives it: the one module that owns the backup format.

**On the host.** restic runs on the tenant's host (Debian's ``restic`` package) with
``RESTIC_PASSWORD_FILE`` pointing at the host's 0600 password file, so no secret is ever on
a command line, in a log or in an error. For ``sftp:`` repositories restic's SSH is given
explicitly (``-o sftp.command=ssh ...``): the host's backup ``identity``, only the storage
host's key pinned in ``known_hosts`` (``StrictHostKeyChecking=yes``: never
trust-on-first-use) and ``BatchMode=yes`` (fail, never prompt).

**In the repository.** One backup of a tenant is two snapshots sharing a ``backup=<id>``
tag (restic 0.14 stores one file per ``backup --stdin``):

- the dump: ``/<slug>.dump``, ``pg_dump --format=custom`` streamed straight into restic
  (no plaintext on disk); tags ``omni``, ``kind=dump``, ``tenant=<slug>``, ``host=<host>``,
  ``image=<image>``, ``release=<release id|none>``, ``backup=<id>``;
- its record: ``/<slug>.counts.json``, written right after; tags ``omni``,
  ``kind=counts``, ``tenant=<slug>``, ``host=<host>``, ``backup=<id>``, ``dump=<snapshot>``,
  ``bytes=<dump size>``. The JSON (``format: 1``) names the dump snapshot, its size, image,
  release, and the row count of every table, counted inside the very transaction snapshot
  ``pg_dump`` dumped (``pg_export_snapshot`` + ``pg_dump --snapshot``), so the counts are
  exactly the dump's.

Snapshots carry ``--host <inventory host name>``. Retention is restic's ``forget`` policy
per tenant (``--tag tenant=<slug>``, grouped by host and path, so dumps and records age
alike), computed as a dry run first, checked to spare the snapshot just taken, then
applied to exactly the listed snapshots and pruned.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from omni.errors import InvalidInput, StepFailed

if TYPE_CHECKING:
    from omni.inventory.models import BackupRetention, BackupSettings, Host
    from omni.transport.base import CommandResult, Transport

FORMAT = 1
DUMP_KIND = "dump"
COUNTS_KIND = "counts"
LOCK_RETRY_SECONDS = 600.0
RESTIC_TIMEOUT_SECONDS = 1800.0
_LOCKED = "repository is already locked"

_SFTP_SHORT = re.compile(r"^sftp:(?:(?P<user>[^@/:]+)@)?(?P<host>[^@/:]+):(?P<path>.+)$")
_SFTP_URL = re.compile(
    r"^sftp://(?:(?P<user>[^@/:]+)@)?(?P<host>[^@/:]+)(?::(?P<port>\d{1,5}))?/(?P<path>.*)$"
)
_TAG_VALUE = re.compile(r"^[A-Za-z0-9._:/@+-]{1,200}$")


def require_backup(host: Host) -> BackupSettings:
    """The host's backup settings; ``InvalidInput`` (exit 2) when it has none."""
    if host.backup is None:
        raise InvalidInput(
            f"host {host.name} has no `backup` settings in hosts.yaml: its tenants cannot be "
            "backed up (see README, Backups)",
            field="backup", host=host.name,
        )
    return host.backup


# -- argv --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SftpTarget:
    user: str | None
    host: str
    port: int


def sftp_target(repository: str) -> SftpTarget | None:
    """The SSH endpoint of an ``sftp:`` repository (``None`` for any other backend).
    Raises ``InvalidInput`` for an ``sftp`` repository it cannot read."""
    if not repository.startswith("sftp:"):
        return None
    match = _SFTP_URL.fullmatch(repository) or _SFTP_SHORT.fullmatch(repository)
    if match is None:
        raise InvalidInput(
            f"backup.repository {repository!r}: expected sftp:user@host:/path or "
            "sftp://user@host:port//path", field="backup.repository",
        )
    port = int(match.groupdict().get("port") or 22)
    return SftpTarget(match.group("user"), match.group("host"), port)


def ssh_command(settings: BackupSettings) -> list[str] | None:
    """The ``ssh`` argv restic's sftp backend runs (``None`` when not ``sftp:``)."""
    target = sftp_target(settings.repository)
    if target is None:
        return None
    argv = ["ssh"]
    if settings.identity:
        argv += ["-i", settings.identity, "-o", "IdentitiesOnly=yes"]
    argv += ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"]
    if settings.known_hosts:
        argv += ["-o", f"UserKnownHostsFile={settings.known_hosts}"]
    argv += ["-o", "ConnectTimeout=10", "-o", "ServerAliveInterval=15",
             "-o", "ServerAliveCountMax=4", "-p", str(target.port)]
    argv += [f"{target.user}@{target.host}" if target.user else target.host, "-s", "sftp"]
    return argv


def restic_argv(settings: BackupSettings, args: Sequence[str]) -> list[str]:
    """``restic`` with the repository, its password file (by environment) and SSH."""
    argv = ["env", f"RESTIC_PASSWORD_FILE={settings.password_file}", "restic",
            "--repo", settings.repository]
    ssh = ssh_command(settings)
    if ssh is not None:
        # restic splits this string itself; every part is a path or word without spaces.
        argv += ["--option", "sftp.command=" + " ".join(ssh)]
    if settings.cache_dir:
        argv += ["--cache-dir", settings.cache_dir]
    return [*argv, *args]


def check_tag_value(name: str, value: str) -> str:
    if not _TAG_VALUE.fullmatch(value):
        raise StepFailed(f"backup tag {name}: {value!r} is not a plain tag value")
    return value


def tags_for(kind: str, slug: str, host: str, backup_id: str,
             extra: Mapping[str, str] | None = None) -> list[str]:
    """The snapshot's tags as ``name=value`` strings (see the module docstring)."""
    values = {"kind": kind, "tenant": slug, "host": host, "backup": backup_id, **(extra or {})}
    return ["omni", *(f"{k}={check_tag_value(k, v)}" for k, v in values.items())]


def backup_args(filename: str, tags: Sequence[str], hostname: str,
                when: datetime | None = None) -> list[str]:
    """``restic backup`` of stdin as ``/<filename>`` (``when``: a faked snapshot time)."""
    args = ["backup", "--json", "--quiet", "--stdin", "--stdin-filename", filename,
            "--host", hostname]
    for tag in tags:
        args += ["--tag", tag]
    if when is not None:
        args += ["--time", when.strftime("%Y-%m-%d %H:%M:%S")]
    return args


def snapshots_args(slug: str) -> list[str]:
    return ["snapshots", "--json", "--tag", f"tenant={slug}"]


def forget_policy_args(slug: str, retention: BackupRetention, *, dry_run: bool) -> list[str]:
    args = ["forget", "--json", "--tag", f"tenant={slug}",
            "--keep-daily", str(retention.daily), "--keep-weekly", str(retention.weekly),
            "--keep-monthly", str(retention.monthly)]
    return [*args, "--dry-run"] if dry_run else args


def dump_args(snapshot: str, filename: str) -> list[str]:
    return ["dump", snapshot, f"/{filename}"]


def check_args(subset_percent: float) -> list[str]:
    return ["check", f"--read-data-subset={subset_percent:g}%"]


def dump_filename(slug: str) -> str:
    return f"{slug}.dump"


def counts_filename(slug: str) -> str:
    return f"{slug}.counts.json"


# -- parsing -----------------------------------------------------------------------------


def parse_time(value: str) -> datetime:
    """restic's RFC 3339 time (nanoseconds allowed) as an aware datetime."""
    match = re.fullmatch(r"(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", value)
    if match is None:
        raise StepFailed(f"restic printed an unreadable time {value!r}")
    base, fraction, zone = match.groups()
    text = base + (f".{(fraction or '0')[:6]:0<6}") + ("+00:00" if zone == "Z" else zone)
    return datetime.fromisoformat(text)


def parse_tags(tags: Iterable[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for tag in tags:
        name, sep, value = tag.partition("=")
        if sep:
            found[name] = value
    return found


@dataclass(frozen=True)
class Snapshot:
    id: str
    short_id: str
    time: datetime
    paths: tuple[str, ...]
    hostname: str
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.tags.get("kind", "")

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.short_id, "time": self.time.isoformat(), "paths": list(self.paths),
                "hostname": self.hostname, "tags": dict(self.tags)}


def snapshot_from(item: Mapping[str, Any]) -> Snapshot:
    return Snapshot(
        id=str(item["id"]),
        short_id=str(item.get("short_id") or str(item["id"])[:8]),
        time=parse_time(str(item["time"])),
        paths=tuple(str(p) for p in item.get("paths") or ()),
        hostname=str(item.get("hostname", "")),
        tags=parse_tags(str(t) for t in item.get("tags") or ()),
    )


def _json(stdout: bytes | str, what: str) -> Any:
    text = stdout.decode("utf-8", "replace") if isinstance(stdout, bytes) else stdout
    try:
        return json.loads(text)
    except ValueError:
        raise StepFailed(f"restic {what} printed no JSON") from None


def parse_snapshots(stdout: bytes | str) -> list[Snapshot]:
    """``restic snapshots --json``, oldest first."""
    data = _json(stdout, "snapshots")
    if not isinstance(data, list):
        raise StepFailed("restic snapshots --json: expected a list")
    return sorted((snapshot_from(item) for item in data), key=lambda s: s.time)


def parse_backup_summary(stdout: bytes | str) -> tuple[str, int]:
    """(snapshot id, bytes read) from ``restic backup --json``'s summary line."""
    text = stdout.decode("utf-8", "replace") if isinstance(stdout, bytes) else stdout
    for line in reversed(text.splitlines()):
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if isinstance(item, dict) and item.get("message_type") == "summary":
            return str(item["snapshot_id"]), int(item.get("total_bytes_processed", 0))
    raise StepFailed("restic backup printed no summary (no snapshot was saved)")


def parse_forget(stdout: bytes | str) -> tuple[list[str], list[str]]:
    """(kept ids, removed ids) from ``restic forget --json``, all groups together."""
    data = _json(stdout, "forget")
    kept: list[str] = []
    removed: list[str] = []
    for group in data or []:
        kept += [str(s["id"]) for s in group.get("keep") or []]
        removed += [str(s["id"]) for s in group.get("remove") or []]
    return kept, removed


# -- the policy (restic 0.14's ApplyPolicy, for tests and dry runs) ----------------------


def _buckets(when: datetime) -> tuple[int, int, int]:
    year, week, _ = when.isocalendar()
    return (when.year * 10000 + when.month * 100 + when.day, year * 100 + week,
            when.year * 100 + when.month)


def kept_by_policy(times: Sequence[datetime], retention: BackupRetention) -> set[int]:
    """Pure: the indexes of ``times`` (one group's snapshots) that restic 0.14's
    ``forget --keep-daily/--keep-weekly/--keep-monthly`` keeps. Newest first, each rule
    keeps the newest snapshot of each of its last N distinct days/ISO weeks/months, in the
    snapshot's own time zone."""
    order = sorted(range(len(times)), key=lambda i: times[i], reverse=True)
    counts = [retention.daily, retention.weekly, retention.monthly]
    last: list[int | None] = [None, None, None]
    kept: set[int] = set()
    for index in order:
        values = _buckets(times[index])
        for rule in range(3):
            if counts[rule] > 0 and values[rule] != last[rule]:
                kept.add(index)
                last[rule] = values[rule]
                counts[rule] -= 1
    return kept


# -- running -----------------------------------------------------------------------------


def is_locked(stderr: bytes) -> bool:
    return _LOCKED in stderr.decode("utf-8", "replace")


def error_tail(stderr: bytes, lines: int = 2) -> str:
    """The last lines restic (or ssh) printed, for an error message (no secrets there:
    the password stays in its file)."""
    text = [ln.strip() for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    text = [ln for ln in text if not ln.startswith("omni-pipe ")]
    return "; ".join(text[-lines:])[:400] or "no output"


def run_restic(
    transport: Transport,
    settings: BackupSettings,
    args: Sequence[str],
    *,
    stdin: bytes | None = None,
    timeout: float = RESTIC_TIMEOUT_SECONDS,
    what: str = "",
    lock_retry_seconds: float = LOCK_RETRY_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
    check: bool = True,
) -> CommandResult:
    """Run restic on the host; a repository locked by another restic (a prune) is waited
    for, up to ``lock_retry_seconds``. Raises ``StepFailed`` naming ``what`` with restic's
    last words when it fails (with ``check``)."""
    return retry_locked(
        lambda: transport.run(restic_argv(settings, args), stdin=stdin, timeout=timeout,
                              check=False),
        what=what or f"restic {args[0]}", lock_retry_seconds=lock_retry_seconds,
        sleep=sleep, check=check,
    )


def retry_locked(
    attempt: Callable[[], CommandResult],
    *,
    what: str,
    lock_retry_seconds: float = LOCK_RETRY_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
    check: bool = True,
    monotonic: Callable[[], float] = time.monotonic,
) -> CommandResult:
    deadline = monotonic() + lock_retry_seconds
    pause = 1.0
    while True:
        result = attempt()
        if result.ok or not is_locked(result.stderr) or monotonic() >= deadline:
            break
        sleep(pause)
        pause = min(pause * 1.5, 10.0)
    if check and not result.ok:
        raise StepFailed(f"{what} failed: {error_tail(result.stderr)}")
    return result


# Runs PRODUCER | CONSUMER (argv each) under bash and reports both exit statuses on stderr,
# so a producer that died half-way (a truncated stream) is never taken for success.
_PIPE = r"""umask 077
n=$1; shift
producer=("${@:1:$n}"); shift "$n"
"${producer[@]}" | "$@"
st=("${PIPESTATUS[@]}")
printf 'omni-pipe %s %s\n' "${st[0]}" "${st[1]}" >&2
[ "${st[0]}" = 0 ] && [ "${st[1]}" = 0 ]
"""


@dataclass(frozen=True)
class PipeResult:
    producer: int
    consumer: int
    stdout: bytes
    stderr: bytes

    @property
    def ok(self) -> bool:
        return self.producer == 0 and self.consumer == 0


def pipe_argv(producer: Sequence[str], consumer: Sequence[str]) -> list[str]:
    return ["bash", "-c", _PIPE, "omni-pipe", str(len(producer)), *producer, *consumer]


def parse_pipe_status(stderr: bytes, exit_status: int) -> tuple[int, int]:
    for line in reversed(stderr.decode("utf-8", "replace").splitlines()):
        if line.startswith("omni-pipe "):
            parts = line.split()
            if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                return int(parts[1]), int(parts[2])
    return (exit_status or -1), (exit_status or -1)  # killed before it could say


def run_pipe(
    transport: Transport,
    producer: Sequence[str],
    consumer: Sequence[str],
    *,
    timeout: float = RESTIC_TIMEOUT_SECONDS,
    secrets: Sequence[str] = (),
) -> PipeResult:
    """``producer | consumer`` on the host, both statuses known."""
    result = transport.run(pipe_argv(producer, consumer), timeout=timeout, check=False,
                           secrets=secrets)
    producer_status, consumer_status = parse_pipe_status(result.stderr, result.exit_status)
    return PipeResult(producer_status, consumer_status, result.stdout, result.stderr)
