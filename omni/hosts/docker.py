"""A small typed facade over the docker SDK's low-level ``APIClient``.

Over SSH the SDK's own ``ssh://`` cannot be used: it reads the system known_hosts and so
cannot honour the inventory's pinned keys. Instead the client is mounted on a ``requests``
adapter (mirroring the SDK's ``SSHHTTPAdapter``) whose HTTP connections each open one
``docker system dial-stdio`` process through our pinned transport.

No SDK object and no SDK exception leaves this module: callers get frozen dataclasses, and
every failure is a ``StepFailed`` naming the host and the operation (or the transport's own
``HostUnreachable`` when the connection is lost). Container environment values are
secrets: they never appear in reprs or exception messages.
"""

from __future__ import annotations

import contextlib
import queue
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from omni.errors import CommandTimeout, OmniError, StepFailed
from omni.transport._common import mask

if TYPE_CHECKING:
    from omni.transport.base import Stream, Transport

# Only used to build the client before the engine's API version is known; never dialled.
_BOOTSTRAP_API_VERSION = "1.24"
_BASE_URL = "http+docker://omni"


@dataclass(frozen=True)
class ContainerInfo:
    id: str
    name: str
    image: str  # the reference the container was created from
    image_id: str
    running: bool
    status: str
    labels: Mapping[str, str]
    env: Mapping[str, str] = field(repr=False)
    cmd: tuple[str, ...]
    restart_policy: str | None
    entrypoint: tuple[str, ...] = ()
    restart_count: int = 0
    started_at: str = ""  # RFC 3339 from the engine; "" if never started
    network_mode: str = ""  # "host", "none", "container:<owner's id>" (pinned at create)


@dataclass(frozen=True)
class ContainerSpec:
    name: str
    image: str
    command: Sequence[str] | None = None
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    labels: Mapping[str, str] = field(default_factory=dict)
    network_mode: str = "host"
    restart_policy: Literal["unless-stopped"] | None = "unless-stopped"
    entrypoint: Sequence[str] | None = None  # None: the image's own
    # Bind mounts: (path on the host, path in the container, read-only).
    mounts: Sequence[tuple[str, str, bool]] = ()
    user: str | None = None  # "uid:gid" to run as; None: the image's USER
    limits: RuntimeLimits | None = None  # None: the engine's defaults (one-off containers)


@dataclass(frozen=True)
class RuntimeLimits:
    """Resource limits and hardening of a long-running tenant container: a memory cap with
    no swap beyond it, a CPU weight, rotated json-file logs, no new privileges, and no
    Linux capabilities at all."""

    memory_mb: int
    cpu_shares: int
    log_max_size_mb: int
    log_max_files: int

    def host_config(self) -> dict[str, Any]:
        return {
            "mem_limit": f"{self.memory_mb}m",
            "memswap_limit": f"{self.memory_mb}m",
            "cpu_shares": self.cpu_shares,
            "log_config": {"type": "json-file", "config": {
                "max-size": f"{self.log_max_size_mb}m", "max-file": str(self.log_max_files)}},
            "security_opt": ["no-new-privileges"],
            "cap_drop": ["ALL"],
        }


def _dial_stdio_adapter(open_stream: Callable[[], Stream], timeout: float) -> Any:
    """A requests adapter whose every HTTP connection is a fresh ``dial-stdio`` stream."""
    import requests.adapters
    import urllib3
    import urllib3.connection
    import urllib3.connectionpool
    from docker.transport.basehttpadapter import BaseHTTPAdapter

    class StreamConnection(urllib3.connection.HTTPConnection):
        def __init__(self, timeout: float) -> None:
            super().__init__("localhost", timeout=timeout)
            self._omni_timeout = timeout

        def connect(self) -> None:
            sock = open_stream()
            sock.settimeout(self._omni_timeout)
            self.sock = sock

    class StreamConnectionPool(urllib3.connectionpool.HTTPConnectionPool):
        def __init__(self, timeout: float, maxsize: int) -> None:
            super().__init__("localhost", timeout=timeout, maxsize=maxsize)
            self._omni_timeout = timeout

        def _new_conn(self) -> StreamConnection:
            return StreamConnection(self._omni_timeout)

        # As the SDK's SSHConnectionPool: urllib3's liveness check calls fileno(), and
        # paramiko makes a pipe per channel on fileno(); skip it.
        # Blocking, so at most ``maxsize`` dial-stdio sessions exist: sshd's default
        # MaxSessions is 10 per connection, shared with commands, SFTP and locks.
        def _get_conn(self, timeout: float | None = None) -> Any:
            if self.pool is None:
                raise urllib3.exceptions.ClosedPoolError(self, "Pool is closed.")
            try:
                conn = self.pool.get(block=True, timeout=timeout or self._omni_timeout)
            except queue.Empty:
                raise urllib3.exceptions.EmptyPoolError(self, "no free connection") from None
            return conn or self._new_conn()

    class DialStdioAdapter(BaseHTTPAdapter):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self._pool = StreamConnectionPool(timeout, maxsize=4)

        def get_connection(self, url: str, proxies: object = None) -> StreamConnectionPool:
            return self._pool

        def close(self) -> None:
            super().close()
            self._pool.close()

    assert issubclass(DialStdioAdapter, requests.adapters.HTTPAdapter)
    return DialStdioAdapter()


def _api_error(
    host: str, action: str, exc: Exception, secrets: Collection[str] = ()
) -> OmniError:
    """The omni error for ``exc``: an omni error as is, anything else a ``StepFailed``.

    The reason is the engine's explanation (or the error's text), with ``secrets`` (a
    container's env values) masked, on one line.
    """
    if isinstance(exc, OmniError):
        return exc
    detail = getattr(exc, "explanation", None) or str(exc)
    detail = " ".join(mask(str(detail), list(secrets)).split())[:300]
    reason = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    return StepFailed(f"host {host}: docker {action} failed: {reason}", host=host)


def _is_read_timeout(exc: Exception) -> bool:
    """requests reports a timeout in a chunked body as ConnectionError(ReadTimeoutError)."""
    from requests.exceptions import Timeout
    from urllib3.exceptions import ReadTimeoutError

    return isinstance(exc, Timeout) or any(isinstance(a, ReadTimeoutError) for a in exc.args)


def _info(data: Mapping[str, Any]) -> ContainerInfo:
    config = data.get("Config") or {}
    state = data.get("State") or {}
    restart = ((data.get("HostConfig") or {}).get("RestartPolicy") or {}).get("Name") or None
    env: dict[str, str] = {}
    for item in config.get("Env") or []:
        key, _, value = item.partition("=")
        env[key] = value
    return ContainerInfo(
        id=data["Id"],
        name=str(data.get("Name", "")).lstrip("/"),
        image=config.get("Image", ""),
        image_id=data.get("Image", ""),
        running=bool(state.get("Running")),
        status=state.get("Status", ""),
        labels=dict(config.get("Labels") or {}),
        env=env,
        cmd=tuple(config.get("Cmd") or ()),
        restart_policy=restart,
        entrypoint=tuple(config.get("Entrypoint") or ()),
        restart_count=int(data.get("RestartCount") or 0),
        started_at=str(state.get("StartedAt") or ""),
        network_mode=str((data.get("HostConfig") or {}).get("NetworkMode") or ""),
    )


@dataclass(frozen=True)
class HostInventory:
    """Containers and images of one host as a single ``docker inspect`` saw them."""

    containers: Mapping[str, ContainerInfo]  # by name; names that do not exist are absent
    image_ids: Mapping[str, str]  # by the reference asked for; unresolved refs are absent


def inspect_host(
    transport: Transport, host_name: str, *, cli: str, socket_path: str,
    containers: Sequence[str], images: Sequence[str],
) -> HostInventory:
    """One ``docker inspect`` run on the host for many containers and images at once (the
    engine API takes a request per object). An object that does not exist is absent from
    the answer; an image is matched to the reference asked for by its tags."""
    import json

    if not containers and not images:
        return HostInventory({}, {})
    argv = [cli, "-H", "unix://" + socket_path, "inspect", *containers, *images]
    result = transport.run(argv, check=False, timeout=60.0)
    try:
        found = json.loads(result.stdout or b"[]")
        infos = [_info(item) for item in found if "State" in item]
        tags = {tag: str(item["Id"]) for item in found if "RepoTags" in item
                for tag in item["RepoTags"] or ()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StepFailed(
            f"host {host_name}: docker inspect answered what is not object JSON: "
            f"{type(exc).__name__}", host=host_name,
        ) from None
    if result.exit_status != 0 and not found:
        # Exit 1 with "No such object" for each missing name is an answer; anything else
        # (no engine, no CLI) is a failure.
        errors = [line for line in result.stderr.decode("utf-8", "replace").splitlines()
                  if line.strip()]
        if not errors or not all("no such" in line.lower() for line in errors):
            detail = " ".join(" ".join(errors).split())[:300] or f"exit {result.exit_status}"
            raise StepFailed(f"host {host_name}: docker inspect failed: {detail}",
                             host=host_name)
    wanted = set(containers)
    image_ids = {}
    for ref in images:
        image_id = tags.get(ref) or tags.get(f"{ref}:latest")
        if image_id is not None:
            image_ids[ref] = image_id
    return HostInventory({i.name: i for i in infos if i.name in wanted}, image_ids)


class DockerEngine:
    """One host's Docker engine. Methods raise ``StepFailed`` (never SDK errors)."""

    def __init__(self, client: Any, host_name: str) -> None:
        self._client = client
        self.host = host_name

    @classmethod
    def over_transport(
        cls, transport: Transport, host_name: str, *, cli: str, socket_path: str,
        timeout: float = 60.0,
    ) -> DockerEngine:
        """Engine API over ``docker system dial-stdio`` streams of ``transport``."""
        from docker import APIClient

        argv = [cli, "-H", "unix://" + socket_path, "system", "dial-stdio"]
        adapter = _dial_stdio_adapter(lambda: transport.open_process(argv), timeout)

        def make(version: str) -> Any:
            client = APIClient(base_url="tcp://127.0.0.1:2375", version=version, timeout=timeout)
            client.mount(_BASE_URL, adapter)
            client.base_url = _BASE_URL
            return client

        try:
            api_version = make(_BOOTSTRAP_API_VERSION).version(api_version=False)["ApiVersion"]
            return cls(make(str(api_version)), host_name)
        except OmniError:
            raise
        except Exception as exc:
            raise StepFailed(
                f"host {host_name}: Docker engine at {socket_path} does not answer "
                f"over dial-stdio ({cli}): {type(exc).__name__}: {str(exc)[:200]}",
                host=host_name,
            ) from None

    @classmethod
    def local(cls, host_name: str, *, socket_path: str, timeout: float = 60.0) -> DockerEngine:
        from docker import APIClient

        try:
            client = APIClient(base_url="unix://" + socket_path, version="auto", timeout=timeout)
        except Exception as exc:
            raise StepFailed(
                f"host {host_name}: Docker engine at {socket_path} does not answer: "
                f"{type(exc).__name__}: {str(exc)[:200]}",
                host=host_name,
            ) from None
        return cls(client, host_name)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._client.close()

    # -- reads --------------------------------------------------------------------------

    def version(self) -> str:
        """The engine's version string (e.g. ``20.10.24``)."""
        try:
            return str(self._client.version()["Version"])
        except Exception as exc:
            raise _api_error(self.host, "version", exc) from None

    def image_id(self, ref: str) -> str | None:
        """The local image's id, or ``None`` when the engine has no such image."""
        from docker.errors import NotFound

        try:
            return str(self._client.inspect_image(ref)["Id"])
        except NotFound:
            return None
        except Exception as exc:
            raise _api_error(self.host, f"inspect image {ref}", exc) from None

    def images(self) -> list[str]:
        """Every tag the engine holds (``repo:tag``)."""
        try:
            return sorted(
                tag for image in self._client.images() for tag in image.get("RepoTags") or ()
            )
        except Exception as exc:
            raise _api_error(self.host, "list images", exc) from None

    def container(self, name: str) -> ContainerInfo | None:
        from docker.errors import NotFound

        try:
            return _info(self._client.inspect_container(name))
        except NotFound:
            return None
        except Exception as exc:
            raise _api_error(self.host, f"inspect container {name}", exc) from None

    def list_containers(self, labels: Mapping[str, str | None]) -> list[ContainerInfo]:
        """All containers (running or not) carrying every label (``None``: any value)."""
        filters = {"label": [k if v is None else f"{k}={v}" for k, v in labels.items()]}
        try:
            found = self._client.containers(all=True, filters=filters)
        except Exception as exc:
            raise _api_error(self.host, "list containers", exc) from None
        try:
            ids = [str(c["Id"]) for c in found]
        except (KeyError, TypeError) as exc:
            raise _api_error(self.host, "list containers", exc) from None
        infos = [self.container(i) for i in ids]
        return sorted((i for i in infos if i is not None), key=lambda i: i.name)

    def logs(self, name: str, tail: int | Literal["all"] = 100) -> bytes:
        try:
            return bytes(self._client.logs(name, stdout=True, stderr=True, tail=tail))
        except Exception as exc:
            raise _api_error(self.host, f"logs {name}", exc) from None

    # -- writes -------------------------------------------------------------------------

    def _create(self, spec: ContainerSpec, restart: str | None) -> str:
        try:
            host_config = self._client.create_host_config(
                network_mode=spec.network_mode,
                restart_policy={"Name": restart} if restart else None,
                binds={
                    source: {"bind": target, "mode": "ro" if read_only else "rw"}
                    for source, target, read_only in spec.mounts
                }
                or None,
                **(spec.limits.host_config() if spec.limits else {}),
            )
            created = self._client.create_container(
                image=spec.image,
                command=list(spec.command) if spec.command is not None else None,
                entrypoint=list(spec.entrypoint) if spec.entrypoint is not None else None,
                name=spec.name,
                environment=dict(spec.env),
                labels=dict(spec.labels),
                host_config=host_config,
                user=spec.user,
            )
        except Exception as exc:
            raise _api_error(
                self.host, f"create container {spec.name}", exc, spec.env.values()
            ) from None
        return str(created["Id"])

    def create_and_start(self, spec: ContainerSpec) -> str:
        """Create and start a container; returns its id. Not idempotent (name clash fails)."""
        container_id = self._create(spec, spec.restart_policy)
        try:
            self._client.start(container_id)
        except Exception as exc:
            raise _api_error(
                self.host, f"start container {spec.name}", exc, spec.env.values()
            ) from None
        return container_id

    def run_once(self, spec: ContainerSpec, timeout: float) -> tuple[int, bytes]:
        """Run a one-off container to completion: ``(exit code, logs)``; always removed.

        A leftover container of the same name (from a killed run) is removed first.
        Raises ``CommandTimeout`` if it runs longer than ``timeout`` seconds.
        """
        self.remove(spec.name, force=True)
        container_id = self._create(spec, None)
        try:
            try:
                self._client.start(container_id)
                status = self._client.wait(container_id, timeout=timeout)
            except Exception as exc:
                if not _is_read_timeout(exc):
                    raise _api_error(
                        self.host, f"run {spec.name}", exc, spec.env.values()
                    ) from None
                raise CommandTimeout(
                    f"host {self.host}: container {spec.name} ran over {timeout:g}s",
                    host=self.host,
                ) from None
            logs = self.logs(container_id, tail="all")
            return int((status or {}).get("StatusCode", -1)), logs
        finally:
            self.remove(container_id, force=True)

    def stop(self, name: str, timeout: int = 10) -> None:
        """Stop a container; absent or already stopped is fine."""
        from docker.errors import NotFound

        try:
            self._client.stop(name, timeout=timeout)
        except NotFound:
            return
        except Exception as exc:
            raise _api_error(self.host, f"stop {name}", exc) from None

    def restart(self, name: str, timeout: int = 10) -> None:
        """Stop (SIGTERM, then SIGKILL after ``timeout`` seconds) and start a container."""
        try:
            self._client.restart(name, timeout=timeout)
        except Exception as exc:
            raise _api_error(self.host, f"restart {name}", exc) from None

    def remove(self, name: str, force: bool = False) -> None:
        """Remove a container; absent is fine."""
        from docker.errors import NotFound

        try:
            self._client.remove_container(name, force=force)
        except NotFound:
            return
        except Exception as exc:
            raise _api_error(self.host, f"remove {name}", exc) from None

    def rename(self, name: str, new_name: str) -> None:
        try:
            self._client.rename(name, new_name)
        except Exception as exc:
            raise _api_error(self.host, f"rename {name} to {new_name}", exc) from None
