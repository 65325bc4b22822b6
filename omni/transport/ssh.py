"""SSH transport: one paramiko connection per host, host keys pinned from the inventory.

Trust: the only host keys paramiko ever sees are the ``Host.host_keys`` pins, stored under
the name paramiko looks them up by (``addr`` for port 22, ``[addr]:port`` otherwise). System
known_hosts files are never read, agent and ``~/.ssh`` keys never tried. Key negotiation is
restricted to the pinned key types, so the server cannot steer us to an unpinned type. Any
other key is refused before authentication, so nothing runs on an untrusted server.

Errors: nothing paramiko raises leaves this module raw. A lost connection becomes
``HostUnreachable``; any other failure ``StepFailed``; both name the host and the operation.

Deadlines: closing an SSH channel does not kill the remote process (sshd sends no signal to
a command without a pty), so every command runs under the remote ``timeout -k 5 T``, which
kills its whole process group at the deadline. A local deadline (T + grace) backs it up in
case the connection itself hangs.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import os
import posixpath
import secrets as _secrets
import shlex
import socket
import stat as stat_module
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from omni.errors import (
    AuthenticationFailed,
    HostKeyMismatch,
    HostUnreachable,
    OmniError,
    StepFailed,
)
from omni.transport._common import (
    TIMEOUT_EXIT_STATUSES,
    command_failed,
    command_timeout,
    describe_argv,
)
from omni.transport.base import CommandResult, FileStat

if TYPE_CHECKING:
    import paramiko

    from omni.inventory.models import Host

_T = TypeVar("_T")

# Seconds between the remote SIGTERM and SIGKILL, and extra slack for the local deadline.
_KILL_AFTER = 5
_LOCAL_GRACE = _KILL_AFTER + 10

# Host key algorithm names, grouped by the key type an OpenSSH public key line names.
_ALGORITHMS_BY_KEY_TYPE: dict[str, tuple[str, ...]] = {
    "ssh-ed25519": ("ssh-ed25519",),
    "ecdsa-sha2-nistp256": ("ecdsa-sha2-nistp256",),
    "ecdsa-sha2-nistp384": ("ecdsa-sha2-nistp384",),
    "ecdsa-sha2-nistp521": ("ecdsa-sha2-nistp521",),
    "ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"),
}
_ALL_HOST_KEY_ALGORITHMS = tuple(
    [a for algs in _ALGORITHMS_BY_KEY_TYPE.values() for a in algs]
    + [f"{a}-cert-v01@openssh.com" for algs in _ALGORITHMS_BY_KEY_TYPE.values() for a in algs]
    + ["ssh-dss", "ssh-dss-cert-v01@openssh.com"]
)


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's SHA256 fingerprint: ``SHA256:`` + unpadded base64 of the key blob."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def known_hosts_name(address: str, port: int) -> str:
    """The name paramiko looks a pinned key up by."""
    return address if port == 22 else f"[{address}]:{port}"


def parse_pins(host: Host) -> list[paramiko.PKey]:
    """The host's pinned keys as paramiko keys; a malformed pin is an inventory error."""
    import paramiko

    from omni.errors import InventoryError

    keys: list[paramiko.PKey] = []
    for index, line in enumerate(host.host_keys):
        key_type, blob = line.split()[:2]
        try:
            keys.append(paramiko.PKey.from_type_string(key_type, base64.b64decode(blob)))
        except Exception as exc:
            raise InventoryError(
                f"hosts.{host.name}.host_keys[{index}]: not a usable public key ({key_type})",
                host=host.name,
            ) from exc
    return keys


def _disabled_host_key_algorithms(pins: Sequence[paramiko.PKey]) -> list[str]:
    allowed: set[str] = set()
    for key in pins:
        allowed.update(_ALGORITHMS_BY_KEY_TYPE.get(key.get_name(), (key.get_name(),)))
    return [a for a in _ALL_HOST_KEY_ALGORITHMS if a not in allowed]


class _RejectUnpinned:
    """Built lazily as a ``paramiko.MissingHostKeyPolicy`` (paramiko loads lazily).

    paramiko's host-key store keeps one key per type and host name, so two pins of one type
    (the normal state during a key rotation) cannot both live there. The store is left
    empty and this policy decides instead: a presented key equal to any pin is accepted
    (nothing is added anywhere); anything else is refused.
    """

    @staticmethod
    def make(host_name: str, pins: Sequence[paramiko.PKey]) -> paramiko.MissingHostKeyPolicy:
        import paramiko

        class RejectUnpinned(paramiko.MissingHostKeyPolicy):
            def missing_host_key(
                self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
            ) -> None:
                if any(pin == key for pin in pins):
                    return
                seen = f"{key.get_name()} {fingerprint(key)}"
                if any(pin.get_name() == key.get_name() for pin in pins):
                    reason = f"host key changed: server presented {seen}, which does not " \
                        "match the pinned key"
                else:
                    reason = f"unknown host key {seen}; not pinned in the inventory"
                raise HostKeyMismatch(
                    f"host {host_name}: {reason}", host=host_name, fingerprint=fingerprint(key)
                )

        return RejectUnpinned()


class SSHTransport:
    """The :class:`omni.transport.base.Transport` contract over one paramiko connection.

    Construction connects (raises ``HostKeyMismatch``, ``AuthenticationFailed`` or
    ``HostUnreachable``); every later channel (commands, SFTP, port forwards, processes)
    rides on that one connection. Not for concurrent ``run`` calls from many threads on
    the same SFTP client; channels themselves are independent.
    """

    def __init__(self, host: Host, *, connect_timeout: float = 10.0) -> None:
        self.host = host.name
        self._host = host
        self._client = self._connect(host, connect_timeout)
        self._sftp: paramiko.SFTPClient | None = None
        # paramiko's SFTPClient is not safe for concurrent requests from several threads.
        self._sftp_lock = threading.RLock()
        self._streamlocal_refused = False  # sshd said no: reach sockets with socat instead

    # -- connection ---------------------------------------------------------------------

    @staticmethod
    def _connect(host: Host, connect_timeout: float) -> paramiko.SSHClient:
        import paramiko

        _quiet_paramiko()
        pins = parse_pins(host)
        client = paramiko.SSHClient()
        # No load_system_host_keys() and an empty store: the inventory's pins, checked by
        # the policy, are the only source of trust.
        client.set_missing_host_key_policy(_RejectUnpinned.make(host.name, pins))
        where = f"host {host.name} ({host.user}@{host.address}:{host.port})"
        if host.identity is None:
            raise AuthenticationFailed(
                f"{where}: no identity (private key file) configured", host=host.name
            )
        try:
            pkey = paramiko.PKey.from_path(os.path.expanduser(host.identity))
        except (OSError, paramiko.SSHException, ValueError) as exc:
            raise AuthenticationFailed(
                f"{where}: cannot load identity {host.identity}: {type(exc).__name__}",
                host=host.name,
            ) from None
        try:
            client.connect(
                host.address,
                port=host.port,
                username=host.user,
                pkey=pkey,
                timeout=connect_timeout,
                banner_timeout=connect_timeout,
                auth_timeout=connect_timeout,
                channel_timeout=connect_timeout,
                look_for_keys=False,
                allow_agent=False,
                disabled_algorithms={"keys": _disabled_host_key_algorithms(pins)},
            )
        except HostKeyMismatch:
            client.close()
            raise
        except paramiko.BadHostKeyException as exc:
            client.close()
            seen = exc.key
            raise HostKeyMismatch(
                f"{where}: host key changed: server presented {seen.get_name()} "
                f"{fingerprint(seen)}, which does not match the pinned key",
                host=host.name,
                fingerprint=fingerprint(seen),
            ) from None
        except paramiko.AuthenticationException:
            client.close()
            raise AuthenticationFailed(
                f"{where}: authentication refused for user {host.user} "
                f"with identity {host.identity}",
                host=host.name,
            ) from None
        except paramiko.ssh_exception.IncompatiblePeer as exc:
            client.close()
            if "host key" not in str(exc):
                raise HostUnreachable(
                    f"{where}: SSH negotiation failed: {exc}", host=host.name
                ) from None
            probed = _probe_host_key(host, connect_timeout)
            detail = f"{probed.get_name()} {fingerprint(probed)}" if probed else "a key"
            raise HostKeyMismatch(
                f"{where}: unknown host key: server offers {detail}, "
                "of no type pinned in the inventory",
                host=host.name,
                fingerprint=fingerprint(probed) if probed else None,
            ) from None
        except (OSError, paramiko.SSHException, EOFError) as exc:
            client.close()
            reason = str(exc) or type(exc).__name__
            raise HostUnreachable(f"{where}: unreachable: {reason}", host=host.name) from None
        transport = client.get_transport()
        if transport is not None:
            transport.set_keepalive(30)
            # Every command is a few small SSH messages each way (channel open, exec,
            # close). With Nagle's algorithm on, the next one waits for the server's
            # delayed ACK: 40 ms per command on Linux. paramiko leaves it on.
            if isinstance(transport.sock, socket.socket):
                with contextlib.suppress(OSError):
                    transport.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return client

    @property
    def _transport(self) -> paramiko.Transport:
        transport = self._client.get_transport()
        if transport is None or not transport.is_active():
            raise HostUnreachable(f"host {self.host}: SSH connection is closed", host=self.host)
        return transport

    def close(self) -> None:
        """Close SFTP and the connection; idempotent."""
        if self._sftp is not None:
            with contextlib.suppress(Exception):
                self._sftp.close()
            self._sftp = None
        self._client.close()

    def _connection_lost(self) -> bool:
        transport = self._client.get_transport()
        return transport is None or not transport.is_active()

    def _error(self, operation: str, exc: BaseException) -> HostUnreachable | StepFailed:
        """The omni error for ``exc`` raised by paramiko during ``operation``."""
        reason = " ".join((str(exc) or type(exc).__name__).split())[:300]
        if self._connection_lost():
            return HostUnreachable(
                f"host {self.host}: SSH connection lost during {operation}: {reason}",
                host=self.host,
            )
        return StepFailed(f"host {self.host}: {operation} failed: {reason}", host=self.host)

    # -- commands -----------------------------------------------------------------------

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = 60.0,
        stdin: bytes | None = None,
        check: bool = True,
        secrets: Sequence[str] = (),
    ) -> CommandResult:
        """Run ``argv`` under the remote ``timeout``; both streams drained concurrently."""
        argv = tuple(argv)
        if not argv:
            raise ValueError("argv must not be empty")
        command = shlex.join(["timeout", "-k", str(_KILL_AFTER), str(timeout), *argv])
        channel = self._open_session()
        started = time.monotonic()
        try:
            self._exec(channel, command, argv, secrets)
            stdout, stderr, status = _communicate(channel, stdin, timeout + _LOCAL_GRACE)
        finally:
            channel.close()
        # paramiko's status stays -1 when the channel closed without one.
        if (status is None or status < 0) and self._connection_lost():
            raise HostUnreachable(
                f"host {self.host}: SSH connection lost while running "
                f"`{describe_argv(argv, secrets)}`",
                host=self.host,
            )
        # 124/137 are also what a command killed by SIGKILL (137) or exiting 124 itself
        # returns; only count them as our deadline when the deadline had in fact passed.
        overran = time.monotonic() - started >= timeout
        if status is None or (status in TIMEOUT_EXIT_STATUSES and overran):
            raise command_timeout(self.host, argv, timeout, secrets)
        result = CommandResult(argv, status, stdout, stderr)
        if check and status != 0:
            raise command_failed(self.host, argv, status, stderr, secrets)
        return result

    def _open_session(self) -> paramiko.Channel:
        """A session channel. On a live connection, a refusal or a slow server (an open
        taking longer than ``_CHANNEL_OPEN_SECONDS``) fails this operation only; the host is
        unreachable only when the connection itself is gone."""
        import paramiko

        try:
            return self._transport.open_session(timeout=_CHANNEL_OPEN_SECONDS)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise self._error("opening an SSH channel", exc) from None

    def _exec(
        self, channel: paramiko.Channel, command: str, argv: Sequence[str], secrets: Sequence[str]
    ) -> None:
        import paramiko

        try:
            channel.exec_command(command)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            channel.close()
            raise self._error(f"starting `{describe_argv(argv, secrets)}`", exc) from None

    # -- files --------------------------------------------------------------------------

    def _sftp_client(self) -> paramiko.SFTPClient:
        with self._sftp_lock:
            if self._sftp is None:
                self._sftp = self._client.open_sftp()
            return self._sftp

    def _sftp_call(self, operation: str, call: Callable[[], _T]) -> _T:
        """Run an SFTP ``call``; what it raises past its own handling becomes an omni error.

        The calls handle the file errors they expect (``OSError`` with an SFTP status);
        anything else (a dropped connection, a protocol error) lands here, and the SFTP
        client is dropped so the next call opens a fresh one.
        """
        with self._sftp_lock:
            try:
                return call()
            except OmniError:
                raise
            except Exception as exc:
                sftp, self._sftp = self._sftp, None
                if sftp is not None:
                    with contextlib.suppress(Exception):
                        sftp.close()
                raise self._error(operation, exc) from None

    def read_file(self, path: str) -> bytes | None:
        """The file's bytes, or ``None`` when it does not exist."""
        return self._sftp_call(f"reading {path}", lambda: self._read_file(path))

    def _read_file(self, path: str) -> bytes | None:
        sftp = self._sftp_client()
        try:
            with sftp.open(path, "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._raise_file_error(f"cannot read {path}", exc)

    def stat(self, path: str) -> FileStat | None:
        """Mode and owner of ``path`` over SFTP (no process started), or ``None``."""
        return self._sftp_call(f"stat {path}", lambda: self._stat(path))

    def _stat(self, path: str) -> FileStat | None:
        sftp = self._sftp_client()
        try:
            found = sftp.stat(path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._raise_file_error(f"cannot stat {path}", exc)
        return FileStat(
            mode=stat_module.S_IMODE(found.st_mode or 0),
            uid=found.st_uid or 0,
            gid=found.st_gid or 0,
        )

    def _raise_file_error(self, what: str, exc: OSError) -> NoReturn:
        """A file error from the server, unless the connection itself went away."""
        if self._connection_lost():
            raise self._error(what.replace("cannot ", "", 1), exc) from None
        raise StepFailed(
            f"host {self.host}: {what}: {exc.strerror or exc}", host=self.host
        ) from None

    def write_file(self, path: str, data: bytes, *, mode: int = 0o644) -> None:
        """Atomically replace ``path``: a temp file in a private (0700) directory beside it,
        chmod, write, rename into place."""
        self._sftp_call(f"writing {path}", lambda: self._write_file(path, data, mode))

    def _write_file(self, path: str, data: bytes, mode: int) -> None:
        sftp = self._sftp_client()
        directory, name = posixpath.split(path)
        # The file is born inside a fresh 0700 directory: SFTP creates it with the server's
        # default mode before our chmod, and nobody but us may see it in that moment.
        private = posixpath.join(directory, f".omni-tmp-{_secrets.token_hex(6)}")
        tmp = posixpath.join(private, name)
        try:
            sftp.mkdir(private, mode=0o700)
            try:
                with sftp.open(tmp, "wbx") as handle:
                    sftp.chmod(tmp, mode)
                    handle.write(data)
                sftp.posix_rename(tmp, path)
            finally:
                with contextlib.suppress(OSError):
                    sftp.remove(tmp)
                with contextlib.suppress(OSError):
                    sftp.rmdir(private)
        except OSError as exc:
            self._raise_file_error(f"cannot write {path}", exc)

    def remove_file(self, path: str) -> None:
        """Remove ``path``; absent is fine."""
        self._sftp_call(f"removing {path}", lambda: self._remove_file(path))

    def _remove_file(self, path: str) -> None:
        sftp = self._sftp_client()
        try:
            sftp.remove(path)
        except FileNotFoundError:
            return
        except OSError as exc:
            self._raise_file_error(f"cannot remove {path}", exc)

    # -- streams ------------------------------------------------------------------------

    def open_tcp(self, host: str, port: int, *, timeout: float = 10.0) -> paramiko.Channel:
        """A ``direct-tcpip`` channel to ``host:port`` as the server sees it."""
        import paramiko

        try:
            return self._transport.open_channel(
                "direct-tcpip", (host, port), ("127.0.0.1", 0), timeout=timeout
            )
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise self._error(f"opening a tunnel to {host}:{port}", exc) from None

    def open_unix(self, path: str, *, timeout: float = 10.0) -> paramiko.Channel:
        """A stream to the Unix socket ``path`` on the server: an OpenSSH
        ``direct-streamlocal`` channel (no process on the host), or ``socat`` in an exec
        channel where sshd does not allow those (``AllowStreamLocalForwarding no``)."""
        import paramiko
        from paramiko.common import OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

        from omni.transport.streamlocal import open_streamlocal

        if not self._streamlocal_refused:
            try:
                return open_streamlocal(self._transport, path, timeout)
            except paramiko.ChannelException as exc:
                if exc.code != OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED:
                    raise self._error(f"connecting to {path}", exc) from None
                self._streamlocal_refused = True
            except (paramiko.SSHException, OSError, EOFError) as exc:
                raise self._error(f"connecting to {path}", exc) from None
        return self.open_process(["socat", "-", f"UNIX-CONNECT:{path}"])

    def open_process(self, argv: Sequence[str]) -> paramiko.Channel:
        """An exec channel running ``argv``; its stdin/stdout are the stream."""
        channel = self._open_session()
        self._exec(channel, shlex.join(argv), argv, ())
        return channel


# A channel opens in milliseconds; a server this slow is overloaded, not gone.
_CHANNEL_OPEN_SECONDS = 30.0


def send_eof(channel: paramiko.Channel) -> None:
    """EOF on ``channel`` unless it is closed, sent while holding the channel's lock.

    paramiko's ``shutdown_write`` sends the EOF after releasing the lock, so the CLOSE its
    transport thread sends on the server's CLOSE can overtake it; sshd then drops the whole
    connection for an EOF on a channel it has freed ("ieof packet referred to nonexistent
    channel"). Holding the lock makes that CLOSE wait for the EOF.
    """
    internals: Any = channel  # paramiko's own channel lock and EOF message, as it uses them
    with internals.lock:
        if channel.closed:
            return
        message = internals._send_eof()
        if message is not None:
            internals.transport._send_user_message(message)


def _quiet_paramiko() -> None:
    """Silence paramiko's own tracebacks (we report its errors ourselves), unless verbose.

    Left alone when the root logger is at DEBUG (``-vv``/``OMNI_DEBUG``) or when someone
    already set paramiko's level explicitly.
    """
    logger = logging.getLogger("paramiko")
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG and logger.level == logging.NOTSET:
        logger.setLevel(logging.CRITICAL)


def _probe_host_key(host: Host, timeout: float) -> paramiko.PKey | None:
    """Key exchange only (no auth) to learn which key an untrusted server shows."""
    import paramiko

    try:
        sock = socket.create_connection((host.address, host.port), timeout=timeout)
    except OSError:
        return None
    transport = paramiko.Transport(sock)
    try:
        transport.start_client(timeout=timeout)
        return transport.get_remote_server_key()
    except (paramiko.SSHException, OSError, EOFError):
        return None
    finally:
        transport.close()


def _communicate(
    channel: paramiko.Channel, stdin: bytes | None, deadline_seconds: float
) -> tuple[bytes, bytes, int | None]:
    """Feed stdin and drain both streams in threads; ``None`` status on local deadline.

    Threads, because paramiko stops adjusting the window of a stream nobody reads: a
    command writing megabytes to stderr while we wait on stdout would stall forever.
    """
    import paramiko

    out: list[bytes] = []
    err: list[bytes] = []
    # A lost connection ends the streams; the caller reports it from the missing status.
    expected = (OSError, EOFError, paramiko.SSHException)

    def pump(read: Callable[[int], bytes], sink: list[bytes]) -> None:
        with contextlib.suppress(*expected):
            while chunk := read(65536):
                sink.append(chunk)

    def feed() -> None:
        # The command may stop reading stdin early: not an error of ours.
        with contextlib.suppress(*expected):
            if stdin:
                channel.sendall(stdin)
            send_eof(channel)

    threads = [
        threading.Thread(target=pump, args=(channel.recv, out), daemon=True),
        threading.Thread(target=pump, args=(channel.recv_stderr, err), daemon=True),
        threading.Thread(target=feed, daemon=True),
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + deadline_seconds
    for thread in threads[:2]:
        thread.join(max(0.0, deadline - time.monotonic()))
    if any(t.is_alive() for t in threads[:2]):
        return b"".join(out), b"".join(err), None
    # Exit status follows the streams' EOF; wait on the event, not recv_exit_status(),
    # which ignores channel timeouts.
    if not channel.status_event.wait(max(0.1, deadline - time.monotonic())):
        return b"".join(out), b"".join(err), None
    # The caller closes the channel next: the feeder must be done with it first (it can
    # lag behind a command that exited without reading stdin, on a loaded machine).
    threads[2].join(max(0.1, deadline - time.monotonic()))
    return b"".join(out), b"".join(err), channel.recv_exit_status()
