"""Local transport: the same contract as SSH, for omni running on the server itself."""

from __future__ import annotations

import contextlib
import os
import secrets as _secrets
import signal
import socket
import stat as stat_module
import subprocess
from collections.abc import Sequence

from omni.errors import StepFailed
from omni.transport._common import command_failed, command_timeout
from omni.transport.base import CommandResult, FileStat


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


class ProcessStream:
    """A process whose stdin and stdout are one end of a socketpair.

    ``close`` closes our end (the process sees EOF) and reaps the process, killing its
    process group if it does not exit within a few seconds.
    """

    def __init__(self, argv: Sequence[str]) -> None:
        ours, theirs = socket.socketpair()
        try:
            self._proc = subprocess.Popen(
                list(argv),
                stdin=theirs.fileno(),
                stdout=theirs.fileno(),
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        self._sock = ours

    def send(self, data: bytes) -> int:
        return self._sock.send(data)

    def sendall(self, data: bytes) -> None:
        self._sock.sendall(data)

    def recv(self, size: int) -> bytes:
        return self._sock.recv(size)

    def settimeout(self, timeout: float | None) -> None:
        self._sock.settimeout(timeout)

    def shutdown_write(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._sock.close()
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            _kill_group(self._proc)
            self._proc.wait()


class LocalTransport:
    """The :class:`omni.transport.base.Transport` contract with subprocess and os."""

    def __init__(self, host: str = "local") -> None:
        self.host = host

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = 60.0,
        stdin: bytes | None = None,
        check: bool = True,
        secrets: Sequence[str] = (),
    ) -> CommandResult:
        """Run ``argv`` in its own session; on timeout the whole process group is killed."""
        argv = tuple(argv)
        if not argv:
            raise ValueError("argv must not be empty")
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            raise command_failed(self.host, argv, 127, str(exc).encode(), secrets) from None
        try:
            stdout, stderr = proc.communicate(stdin, timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            proc.communicate()
            raise command_timeout(self.host, argv, timeout, secrets) from None
        except BaseException:
            _kill_group(proc)
            proc.wait()
            raise
        result = CommandResult(argv, proc.returncode, stdout, stderr)
        if check and proc.returncode != 0:
            raise command_failed(self.host, argv, proc.returncode, stderr, secrets)
        return result

    def read_file(self, path: str) -> bytes | None:
        try:
            with open(path, "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StepFailed(f"host {self.host}: cannot read {path}: {exc.strerror}") from None

    def stat(self, path: str) -> FileStat | None:
        try:
            found = os.stat(path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StepFailed(f"host {self.host}: cannot stat {path}: {exc.strerror}") from None
        return FileStat(mode=stat_module.S_IMODE(found.st_mode), uid=found.st_uid, gid=found.st_gid)

    def write_file(self, path: str, data: bytes, *, mode: int = 0o644) -> None:
        """Atomic: temp file (created with ``mode``) in the same directory, then rename."""
        directory, name = os.path.split(path)
        tmp = os.path.join(directory, f".{name}.omni-tmp-{_secrets.token_hex(6)}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.fchmod(fd, mode)
                with os.fdopen(fd, "wb", closefd=False) as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise StepFailed(f"host {self.host}: cannot write {path}: {exc.strerror}") from None

    def remove_file(self, path: str) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StepFailed(f"host {self.host}: cannot remove {path}: {exc.strerror}") from None

    def open_tcp(self, host: str, port: int, *, timeout: float = 10.0) -> socket.socket:
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            raise StepFailed(f"host {self.host}: cannot connect to {host}:{port}: {exc}") from None
        sock.settimeout(None)
        return sock

    def open_unix(self, path: str, *, timeout: float = 10.0) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except OSError as exc:
            sock.close()
            raise StepFailed(f"host {self.host}: cannot connect to {path}: {exc}") from None
        sock.settimeout(None)
        return sock

    def open_process(self, argv: Sequence[str]) -> ProcessStream:
        return ProcessStream(argv)

    def close(self) -> None:
        """Nothing to release."""
