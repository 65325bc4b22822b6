"""``python bench/omni_traced.py ARGS...`` = ``omni ARGS...``, noting the local port of every
TCP connection it opens to an SSH port (``BENCH_SSH_PORTS``: ``port,port``) in the file
``BENCH_SSH_TRACE``, one per line. The fleet bench matches those ports against the lab
sshd logs, so it counts this command's SSH connections only, not those of other users of
the same lab. The patch only records; omni runs unchanged.
"""

from __future__ import annotations

import os
import socket
import sys
from typing import Any


def _install(trace: str, ssh_ports: frozenset[int]) -> None:
    original = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> None:
        original(self, address)
        if isinstance(address, tuple) and len(address) >= 2 and address[1] in ssh_ports:
            with open(trace, "a") as out:
                out.write(f"{self.getsockname()[1]}\n")

    socket.socket.connect = connect  # type: ignore[method-assign,assignment]


def main() -> None:
    trace = os.environ.get("BENCH_SSH_TRACE")
    if trace:
        ports = frozenset(int(p) for p in os.environ.get("BENCH_SSH_PORTS", "22").split(","))
        _install(trace, ports)
    from omni.cli.app import main as omni_main

    sys.argv[0] = "omni"
    omni_main()


if __name__ == "__main__":
    main()
