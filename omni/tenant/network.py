"""A tenant's private network: its own network namespace, reachable only through sockets.

Each tenant's Redis and Medusa run in one network namespace that has nothing but loopback,
owned by the tenant's *gateway* container (``--network none``). Nothing of another tenant
and nothing on the host can be reached from inside it, and nothing inside it can be
reached from outside except through Unix sockets in the tenant's private ``net``
directory (0700, root), which only the tenant's two gateway containers mount:

- gateway (in the namespace): ``net/app-<port>.sock`` -> the app on ``127.0.0.1:<port>``
  (the live and the standby port), ``net/redis.sock`` -> Redis (omni's health probes), and
  ``127.0.0.1:<postgres port>`` -> ``net/pg.sock``;
- publish (on the host's network): ``<bind_address>:<port>`` -> ``net/app-<port>.sock``
  (what nginx proxies to, loopback only) and ``net/pg.sock`` -> the host's Postgres.

Both run socat (``omni-gateway LISTEN CONNECT ...``). Their configuration depends only on
the tenant's ports, so deploys never touch them (blue/green swaps which of the two ports
is live). A new gateway is a new namespace, and the engine pins a joined container to
its owner's id: the containers joined to it carry the gateway's configuration in theirs,
so whatever replaces the gateway replaces them in the same run, and a converge restarts
any joined container older than its gateway.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

from omni.tenant.spec import IN_NAMESPACE as LOOPBACK
from omni.tenant.spec import TenantSpec

if TYPE_CHECKING:
    from omni.hosts.session import HostSession
    from omni.transport.base import Stream

NET_DIR_IN_CONTAINER = "/run/omni-net"


def net_dir(spec: TenantSpec) -> str:
    return f"{spec.state_dir}/net"


def gateway_container(spec: TenantSpec) -> str:
    return f"omni-{spec.slug}-gw"


def publish_container(spec: TenantSpec) -> str:
    return f"omni-{spec.slug}-publish"


def network_mode(spec: TenantSpec) -> str:
    """How a container joins the tenant's namespace (Redis, app, one-off containers)."""
    return f"container:{gateway_container(spec)}"


def app_ports(spec: TenantSpec) -> tuple[int, ...]:
    """The ports the gateways forward: live and standby, sorted so a deploy (which swaps
    them) leaves the gateways' configuration unchanged."""
    ports = {spec.app_port}
    if spec.tenant.standby_app_port:
        ports.add(spec.tenant.standby_app_port)
    return tuple(sorted(p for p in ports if p))


def _sock(name: str) -> str:
    return f"{NET_DIR_IN_CONTAINER}/{name}"


def redis_socket(spec: TenantSpec) -> str:
    """Redis through the gateway, on the host (for omni's probes only)."""
    return f"{net_dir(spec)}/redis.sock"


def _listen_unix(name: str) -> str:
    # unlink-early: a socket left by a previous gateway would make bind() fail.
    return f"UNIX-LISTEN:{_sock(name)},fork,unlink-early,mode=600"


# Every TCP end sets TCP_NODELAY: Postgres and HTTP are request/response protocols of small
# writes, and Nagle's algorithm against delayed ACKs would add up to 40 ms to a round trip.


def gateway_command(spec: TenantSpec) -> tuple[str, ...]:
    """``omni-gateway`` pairs inside the tenant's namespace."""
    pg_port = spec.host.postgres.port
    pairs: list[tuple[str, str]] = [
        (_listen_unix(f"app-{port}.sock"), f"TCP:{LOOPBACK}:{port},nodelay")
        for port in app_ports(spec)
    ]
    pairs.append((_listen_unix("redis.sock"), f"TCP:{LOOPBACK}:{spec.redis_port},nodelay"))
    pairs.append((f"TCP-LISTEN:{pg_port},bind={LOOPBACK},fork,reuseaddr,nodelay",
                  f"UNIX-CONNECT:{_sock('pg.sock')}"))
    return tuple(part for pair in pairs for part in pair)


def publish_command(spec: TenantSpec) -> tuple[str, ...]:
    """``omni-gateway`` pairs on the host's network: the app ports on ``bind_address``
    (loopback), and the tenant's way to Postgres."""
    pg = spec.host.postgres
    # forever: a tenant moving from host networking still holds its app port until its app
    # container is replaced; the publisher binds it as soon as it is free.
    pairs: list[tuple[str, str]] = [
        (f"TCP-LISTEN:{port},bind={spec.bind_address},fork,reuseaddr,nodelay,forever,interval=1",
         f"UNIX-CONNECT:{_sock(f'app-{port}.sock')}")
        for port in app_ports(spec)
    ]
    pairs.append((_listen_unix("pg.sock"), f"TCP:{pg.host}:{pg.port},nodelay"))
    return tuple(part for pair in pairs for part in pair)


def open_socket(session: HostSession, path: str) -> Stream | socket.socket:
    """A stream to a Unix socket on the host (see ``Transport.open_unix``)."""
    return session.transport.open_unix(path)


def redis_probe(spec: TenantSpec) -> Callable[[HostSession], str | None]:
    """Readiness of the tenant's Redis seen through its gateway: any reply to ``PING``
    (``-NOAUTH`` included) means it serves; None when ready, else why not."""

    def probe(session: HostSession) -> str | None:
        stream = open_socket(session, redis_socket(spec))
        try:
            stream.settimeout(5.0)
            stream.sendall(b"PING\r\n")
            reply = stream.recv(64)
        except OSError as exc:
            return str(exc) or type(exc).__name__
        finally:
            stream.close()
        if reply[:1] in (b"+", b"-"):
            return None
        return f"no reply from Redis on {redis_socket(spec)}"

    return probe
