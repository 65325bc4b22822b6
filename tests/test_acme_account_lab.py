"""Two first certificate orders at once on one host end with one ACME account (lab: real
sshd, real Pebble): the account key is created and registered under the host's lock."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from omni.acme.client import load_or_create_account_key, open_account
from omni.inventory.models import Host
from omni.resources.certificate import ACME_ACCOUNT_LOCK

pytestmark = pytest.mark.lab


def test_two_concurrent_first_orders_share_one_account_key(
    dev_host: Host, session: Callable[[Host], Any], tmp_path: Path,
) -> None:
    key_file = tmp_path / "acme" / "account.json"  # the lab host is this machine
    settings = dev_host.acme.model_copy(update={"account_key_file": str(key_file)})
    start = threading.Barrier(2)
    seen: list[tuple[str, str]] = []
    errors: list[BaseException] = []

    def first_order() -> None:
        s = session(dev_host)
        try:
            start.wait(timeout=60)
            with s.lock(ACME_ACCOUNT_LOCK, wait_seconds=120, purpose="test"):
                key, existed = load_or_create_account_key(s.transport, settings.account_key_file)
                client = open_account(settings, key, existed)
            seen.append((key.thumbprint().hex(), str(client.net.account.uri)))
        except BaseException as exc:  # reported below, with the thread's own error
            errors.append(exc)

    threads = [threading.Thread(target=first_order) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors
    assert len(seen) == 2
    assert seen[0] == seen[1]  # one key, one account
    assert key_file.stat().st_mode & 0o777 == 0o600
