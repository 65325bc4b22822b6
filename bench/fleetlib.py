"""Pure helpers of the fleet benchmark (``bench/fleet.py``): statistics, the ideal wall time
of a parallel roll, sshd log parsing, known_hosts lines, memory projection, Ansible's recap
and the results' Markdown. No I/O here: every function is unit-tested in
``tests/test_bench_fleetlib.py``.
"""

from __future__ import annotations

import base64
import hashlib
import re
import statistics
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

MiB = 1024 * 1024
GiB = 1024 * MiB


@dataclass(frozen=True)
class Stats:
    runs: int
    min: float
    median: float
    max: float

    def to_dict(self) -> dict[str, float | int]:
        return {"runs": self.runs, "min": round(self.min, 3), "median": round(self.median, 3),
                "max": round(self.max, 3)}


def stats(samples: Sequence[float]) -> Stats:
    """min, median and max of at least one sample."""
    if not samples:
        raise ValueError("stats of no samples")
    return Stats(len(samples), min(samples), statistics.median(samples), max(samples))


def ideal_seconds(
    per_tenant: Sequence[tuple[str, float]], parallel: int, concurrency: Mapping[str, int]
) -> float:
    """The shortest possible wall time of a roll over tenants ``(host, seconds)`` with at
    most ``parallel`` tenants at once overall and ``concurrency[host]`` on each host, if the
    scheduler lost no time: the largest of (the sum of all tenant times / ``parallel``),
    for each host (its sum / min(``parallel``, its concurrency)), and the longest single
    tenant. A lower bound; the runner's wall time divided by it is its scheduling overhead.
    """
    if parallel < 1:
        raise ValueError("parallel must be >= 1")
    if not per_tenant:
        return 0.0
    total = sum(seconds for _, seconds in per_tenant)
    by_host: dict[str, float] = {}
    for host, seconds in per_tenant:
        by_host[host] = by_host.get(host, 0.0) + seconds
    bounds = [total / parallel, max(seconds for _, seconds in per_tenant)]
    for host, host_total in by_host.items():
        bounds.append(host_total / min(parallel, concurrency.get(host, parallel)))
    return max(bounds)


# sshd (LogLevel VERBOSE): "Accepted publickey for root from 127.0.0.1 port 41234 ssh2:
# ED25519 SHA256:abc..." (with -E, optionally behind a syslog-style prefix).
_ACCEPTED = re.compile(
    r"Accepted (?P<method>\S+) for (?P<user>\S+) from (?P<addr>\S+) port (?P<port>\d+) "
    r"[^\s:]+(?:: (?P<keytype>\S+) (?P<fp>SHA256:[A-Za-z0-9+/]+))?"
)


@dataclass(frozen=True)
class Accepted:
    """One SSH connection sshd let in."""

    user: str
    address: str
    port: int
    fingerprint: str | None


def accepted_connections(log_text: str) -> list[Accepted]:
    """Every ``Accepted ...`` line of an sshd log, in order."""
    found = []
    for line in log_text.splitlines():
        match = _ACCEPTED.search(line)
        if match:
            found.append(
                Accepted(match["user"], match["addr"], int(match["port"]), match["fp"])
            )
    return found


def count_connections(
    log_text: str, fingerprint: str | None = None, source_ports: Collection[int] | None = None
) -> int:
    """SSH connections accepted in ``log_text``; only those authenticated with the key of
    ``fingerprint`` when given (the lab's client key, so restic's SFTP key is not counted),
    and only those from ``source_ports`` when given (the ports one process connected from:
    other users of the same lab are then not counted)."""
    return sum(
        1 for a in accepted_connections(log_text)
        if (fingerprint is None or a.fingerprint == fingerprint)
        and (source_ports is None or a.port in source_ports)
    )


def key_fingerprint(public_key_line: str) -> str:
    """OpenSSH's ``SHA256:...`` fingerprint of a public key line ``type base64 [comment]``
    (what sshd logs and ``ssh-keygen -l`` prints)."""
    parts = public_key_line.split()
    if len(parts) < 2:
        raise ValueError("not an OpenSSH public key line")
    blob = base64.b64decode(parts[1], validate=True)
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def known_hosts_lines(hosts: Iterable[tuple[str, int, Sequence[str]]]) -> list[str]:
    """known_hosts lines for ``(address, port, pinned key lines)``: ``[addr]:port`` unless
    port 22, comments dropped. What Ansible's ssh gets with StrictHostKeyChecking=yes."""
    lines = []
    for address, port, keys in hosts:
        name = address if port == 22 else f"[{address}]:{port}"
        for key in keys:
            keytype, blob = key.split()[:2]
            lines.append(f"{name} {keytype} {blob}")
    return lines


def memory_fits(
    available_bytes: int, per_tenant_bytes: int, tenants_to_add: int, reserve_bytes: int
) -> tuple[bool, int]:
    """Whether ``tenants_to_add`` more tenants of ``per_tenant_bytes`` each leave at least
    ``reserve_bytes`` available; and the bytes they would take."""
    needed = max(0, tenants_to_add) * per_tenant_bytes
    return available_bytes - needed >= reserve_bytes, needed


def per_tenant_memory(
    available_before: int, available_after: int, added: int, floor_bytes: int
) -> int:
    """Memory one more tenant takes, estimated from MemAvailable before and after adding
    ``added`` tenants; never below ``floor_bytes`` (other users of the machine make the
    difference noisy, and can even make it negative)."""
    if added <= 0:
        return floor_bytes
    return max(floor_bytes, (available_before - available_after) // added)


_RECAP = re.compile(
    r"^(?P<host>\S+)\s*:\s*ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+"
    r"unreachable=(?P<unreachable>\d+)\s+failed=(?P<failed>\d+)",
    re.MULTILINE,
)


def ansible_recap(output: str) -> dict[str, int]:
    """Totals of an ``ansible-playbook`` PLAY RECAP: hosts, ok, changed, unreachable,
    failed (hosts with any failed or unreachable task count in ``hosts_failed``)."""
    totals = {"hosts": 0, "ok": 0, "changed": 0, "unreachable": 0, "failed": 0,
              "hosts_failed": 0}
    for match in _RECAP.finditer(output):
        totals["hosts"] += 1
        for key in ("ok", "changed", "unreachable", "failed"):
            totals[key] += int(match[key])
        if int(match["failed"]) or int(match["unreachable"]):
            totals["hosts_failed"] += 1
    return totals


def replace_section(text: str, name: str, body: str) -> str:
    """``text`` with the lines between ``<!-- name:start -->`` and ``<!-- name:end -->``
    replaced by ``body``; the marked section is appended when ``text`` has none."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{body.rstrip()}\n{end}"
    head, found, rest = text.partition(start)
    if not found:
        return (text.rstrip() + "\n\n" if text.strip() else "") + block + "\n"
    _, found_end, tail = rest.partition(end)
    if not found_end:
        raise ValueError(f"{start} has no {end}")
    return head + block + tail


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]],
                   right: Sequence[bool] | None = None) -> str:
    """A GitHub Markdown table; ``right[i]`` right-aligns column i (numbers)."""
    align = right or [False] * len(header)
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---:" if r else "---" for r in align) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return "\n".join(lines)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value).replace("|", "\\|")
