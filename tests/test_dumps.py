"""Dump naming and retention (pure)."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from omni.tenant.dumps import dump_name_pattern, dumps_to_prune

NOW = datetime(2026, 12, 2, 12, 0, 0, tzinfo=UTC)


def _name(slug: str, days_ago: float) -> str:
    return f"{slug}-{(NOW - timedelta(days=days_ago)).strftime('%Y%m%dT%H%M%SZ')}.dump"


@pytest.mark.parametrize(
    ("ages", "keep", "keep_days", "pruned"),
    [
        # newest `keep` stay whatever their age
        ([1, 20, 30, 40], 2, 0, [30, 40]),
        # anything younger than keep_days stays even beyond `keep`
        ([1, 2, 3, 20, 30], 1, 10, [20, 30]),
        # nothing old enough: nothing pruned
        ([1, 2, 3], 1, 30, []),
        ([], 1, 0, []),
    ],
)
def test_retention_keeps_the_newest_and_the_young(
    ages: list[float], keep: int, keep_days: int, pruned: list[float]
) -> None:
    names = [_name("acme", a) for a in ages]
    assert dumps_to_prune(names, "acme", keep, keep_days, NOW, protect="") == [
        _name("acme", a) for a in pruned]


def test_the_dump_just_taken_is_never_pruned() -> None:
    # A clock-skewed "just taken" dump that looks old is still protected.
    names = [_name("acme", 1), _name("acme", 50)]
    assert dumps_to_prune(names, "acme", 1, 0, NOW, protect=_name("acme", 50)) == []


def test_another_tenant_whose_slug_starts_the_same_is_never_touched() -> None:
    names = [_name("acme-outdoor", 90), _name("acme", 1), _name("acme", 90), "acme-notes.dump",
             ".acme-20261101T000000Z.dump.pgpass"]
    assert dumps_to_prune(names, "acme", 1, 0, NOW, protect="") == [_name("acme", 90)]
    assert dump_name_pattern("acme").fullmatch(_name("acme-outdoor", 1)) is None


def test_a_passfile_in_use_by_a_tenant_whose_slug_starts_the_same_survives(
    tmp_path: Path,
) -> None:
    """``acme``'s passfile clean-up (real ``find`` on a real directory) leaves the passfile
    ``acme-outdoor``'s concurrent dump is using, removes only ones a killed run left over an
    hour ago, and removes its own on exit."""
    from omni.tenant.dumps import passfile_for
    from omni.transport.local import LocalTransport

    in_use = tmp_path / ".acme-outdoor-20261202T115900Z.dump.1a2b3c4d.pgpass"
    stale = tmp_path / ".acme-outdoor-20261202T090000Z.dump.5e6f7a8b.pgpass"
    unrelated = tmp_path / "acme-notes.pgpass"
    for path in (in_use, stale, unrelated):
        path.write_text("x")
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    os.utime(unrelated, (two_hours_ago, two_hours_ago))
    near = str(tmp_path / "acme-20261202T120000Z.dump")
    with passfile_for(LocalTransport(), near, "127.0.0.1", 5432, "tenant_acme", "admin",
                      "pa:ss") as passfile:
        assert Path(passfile).read_text() == "127.0.0.1:5432:tenant_acme:admin:pa\\:ss\n"
        assert Path(passfile).stat().st_mode & 0o777 == 0o600
        assert in_use.exists() and unrelated.exists() and not stale.exists()
    assert not Path(passfile).exists() and in_use.exists()
