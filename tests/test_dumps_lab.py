"""Dumps on the lab's Postgres: an empty database's dump is valid, a cut one is not."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
from psycopg import sql

from omni.errors import StepFailed
from omni.hosts.session import HostSession
from omni.inventory.models import Host
from omni.tenant.dumps import take_dump, verify_dump
from tests import tenant_lab as tl

pytestmark = pytest.mark.lab


@pytest.fixture
def empty_database(dev_host: Host, session: Callable[[Host], HostSession]) -> Iterator[str]:
    name = f"omni_dumptest_{tl.unique_slug('e').replace('-', '_')}"
    s = session(dev_host)
    with s.postgres() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield name
    with s.postgres() as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


def test_an_empty_database_dumps_and_verifies_with_no_entries_and_a_cut_dump_does_not(
    dev_host: Host, session: Callable[[Host], HostSession], empty_database: str,
) -> None:
    s = session(dev_host)
    dump = take_dump(s.transport, dev_host, "dumptest", empty_database,
                     user=dev_host.postgres.admin_user,
                     password=s.admin_password(), now=datetime.now(UTC))
    try:
        assert dump.entries == 0 and dump.size > 0
        cut = dump.path + ".cut"
        s.transport.run(["sh", "-c", 'head -c 100 "$1" > "$2" && chmod 600 "$2"', "sh",
                         dump.path, cut])
        with pytest.raises(StepFailed, match="does not read back"):
            verify_dump(s.transport, cut)
    finally:
        s.transport.run(["rm", "-f", "--", dump.path, dump.path + ".cut"])
