"""The Postgres port forward's pumps: a pair is torn down once, the SSH channel only closed."""

from __future__ import annotations

import socket
import threading

from omni.hosts.postgres import _pump


class FakeChannel:
    """Stands in for a paramiko channel: what the pumps do to it is recorded."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.closed = threading.Event()

    def recv(self, size: int) -> bytes:
        self.closed.wait(10)  # blocks until closed, as a channel's recv does
        return b""

    def sendall(self, data: bytes) -> None:
        self.calls.append("sendall")

    def shutdown(self, how: int) -> None:
        self.calls.append("shutdown")

    def close(self) -> None:
        self.calls.append("close")
        self.closed.set()


def test_the_first_pump_to_stop_closes_both_ends_once_and_never_shuts_the_channel() -> None:
    local, psycopg = socket.socketpair()
    channel = FakeChannel()
    ended = threading.Lock()
    pumps = [threading.Thread(target=_pump, args=(local, channel, ended)),
             threading.Thread(target=_pump, args=(channel, local, ended))]
    for pump in pumps:
        pump.start()
    psycopg.sendall(b"query")
    psycopg.close()  # psycopg hangs up: the local side ends first
    for pump in pumps:
        pump.join(10)
    assert not any(pump.is_alive() for pump in pumps)
    assert channel.calls == ["sendall", "close"]
    assert local.fileno() == -1
