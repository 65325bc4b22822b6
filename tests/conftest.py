"""Shared fixtures. Lab tests (``@pytest.mark.lab``) run against real servers.

When the lab inventory is absent they are skipped with a reason, unless
``OMNI_LAB_REQUIRED=1`` (``make test`` sets it): then they fail, so CI cannot pass by
skipping.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from omni.hosts.session import HostSession
from omni.inventory.models import Host, HostsFile
from tests import lab as labmod


@pytest.fixture(scope="session")
def lab_hosts() -> HostsFile:
    directory = labmod.inventory_dir()
    if not (directory / "hosts.yaml").is_file():
        message = (
            f"lab inventory {directory}/hosts.yaml not found: run `make lab` "
            "(or set OMNI_LAB_INVENTORY)"
        )
        if labmod.lab_required():
            pytest.fail(message + " [OMNI_LAB_REQUIRED=1]")
        pytest.skip(message)
    return labmod.load_hosts(directory)


def _host(lab_hosts: HostsFile, name: str) -> Host:
    if name not in lab_hosts.hosts:
        pytest.fail(f"lab inventory has no host {name!r} (hosts: {sorted(lab_hosts.hosts)})")
    return lab_hosts.hosts[name]


@pytest.fixture(scope="session")
def dev_host(lab_hosts: HostsFile) -> Host:
    return _host(lab_hosts, "dev")


@pytest.fixture(scope="session")
def netcup_host(lab_hosts: HostsFile) -> Host:
    return _host(lab_hosts, "netcup")


@pytest.fixture
def session() -> Iterator[Callable[[Host], HostSession]]:
    """Factory: ``session(host)`` opens a HostSession that is closed at teardown."""
    opened: list[HostSession] = []

    def make(host: Host) -> HostSession:
        s = HostSession(host, connect_timeout=10)
        opened.append(s)
        return s

    yield make
    for s in opened:
        s.close()
