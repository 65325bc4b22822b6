#!/usr/bin/env python3
"""Ask one DNS server for the A records of one name (stdlib only, for the lab's checks).

Usage: dnsq.py SERVER_IP PORT NAME [TIMEOUT_SECONDS]
Prints each IPv4 address of the answer on its own line. Exit 0 when at least one A
record came back, 1 when the server answered without one, 2 when it did not answer.
"""

from __future__ import annotations

import secrets
import socket
import struct
import sys


def build_query(name: str, query_id: int) -> bytes:
    header = struct.pack(">HHHHHH", query_id, 0x0100, 1, 0, 0, 0)  # RD set, one question
    labels = b"".join(
        bytes([len(part)]) + part.encode("ascii") for part in name.rstrip(".").split(".")
    )
    return header + labels + b"\x00" + struct.pack(">HH", 1, 1)  # QTYPE A, QCLASS IN


def skip_name(data: bytes, offset: int) -> int:
    while True:
        length = data[offset]
        if length & 0xC0 == 0xC0:  # compression pointer ends the name
            return offset + 2
        offset += 1
        if length == 0:
            return offset
        offset += length


def parse_a_records(data: bytes, query_id: int) -> list[str]:
    rid, _flags, qdcount, ancount, _ns, _ar = struct.unpack(">HHHHHH", data[:12])
    if rid != query_id:
        raise ValueError("answer id does not match the query")
    offset = 12
    for _ in range(qdcount):
        offset = skip_name(data, offset) + 4
    addresses = []
    for _ in range(ancount):
        offset = skip_name(data, offset)
        rtype, _rclass, _ttl, rdlength = struct.unpack(">HHIH", data[offset : offset + 10])
        offset += 10
        if rtype == 1 and rdlength == 4:
            addresses.append(socket.inet_ntoa(data[offset : offset + 4]))
        offset += rdlength
    return addresses


def main(argv: list[str]) -> int:
    server, port, name = argv[1], int(argv[2]), argv[3]
    timeout = float(argv[4]) if len(argv) > 4 else 2.0
    query_id = secrets.randbelow(0x10000)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(build_query(name, query_id), (server, port))
            data, _ = sock.recvfrom(4096)
        except OSError as exc:
            print(f"no answer from {server}:{port}: {exc}", file=sys.stderr)
            return 2
    addresses = parse_a_records(data, query_id)
    for address in addresses:
        print(address)
    return 0 if addresses else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
