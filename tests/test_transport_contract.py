"""One contract, two transports: SSH to the lab's dev host, and local subprocess."""

from __future__ import annotations

import random
import shlex
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from omni.errors import CommandFailed, CommandTimeout, HostUnreachable, StepFailed
from omni.hosts.session import HostSession
from omni.inventory.models import Host
from omni.transport.base import Stream, Transport
from omni.transport.local import LocalTransport
from omni.transport.ssh import SSHTransport
from tests.lab import wait_until

MIB = 1024 * 1024


@dataclass
class Target:
    transport: Transport
    scratch: str  # a fresh directory on the target host


@pytest.fixture(params=[pytest.param("ssh", marks=pytest.mark.lab), "local"])
def target(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    session: Callable[[Host], HostSession],
) -> Iterator[Target]:
    if request.param == "local":
        local = LocalTransport("local")
        yield Target(local, str(tmp_path))
        local.close()
        return
    dev_host: Host = request.getfixturevalue("dev_host")
    transport = session(dev_host).transport
    scratch = transport.run(["mktemp", "-d", "/tmp/omni-contract.XXXXXX"]).text().strip()
    yield Target(transport, scratch)
    transport.run(["rm", "-rf", "--", scratch], check=False)


def test_exit_status_is_reported_without_check(target: Target) -> None:
    result = target.transport.run(["sh", "-c", "echo out; echo err >&2; exit 7"], check=False)
    assert (result.exit_status, result.stdout, result.stderr) == (7, b"out\n", b"err\n")
    assert not result.ok
    assert target.transport.run(["true"]).ok


def test_nonzero_exit_raises_naming_command_status_and_stderr(target: Target) -> None:
    with pytest.raises(CommandFailed) as info:
        target.transport.run(["sh", "-c", "echo 'it broke' >&2; exit 3"])
    message = str(info.value)
    assert "exited 3" in message
    assert "it broke" in message
    assert "sh -c" in message
    assert info.value.fields["exit_status"] == 3


def test_secrets_are_masked_in_failure_messages(target: Target) -> None:
    secret = "hunter2-" + str(random.randrange(10**9))
    with pytest.raises(CommandFailed) as info:
        target.transport.run(
            ["sh", "-c", 'echo "bad password $1" >&2; exit 1', "sh", secret], secrets=[secret]
        )
    assert secret not in str(info.value)
    assert secret not in repr(info.value.to_dict())
    assert "***" in str(info.value)


@pytest.mark.parametrize("first", ["stdout", "stderr"])
def test_ten_mib_on_each_stream_drains_without_hanging(target: Target, first: str) -> None:
    # Writing the whole of one stream before the other deadlocks any reader that drains
    # the streams one after the other; both orders are tried.
    out = "head -c 10485760 /dev/zero | tr '\\0' o"
    err = "head -c 10485760 /dev/zero | tr '\\0' e >&2"
    script = f"{out}; {err}" if first == "stdout" else f"{err}; {out}"
    result = target.transport.run(["sh", "-c", script], timeout=120)
    assert len(result.stdout) == 10 * MIB
    assert len(result.stderr) == 10 * MIB
    assert set(result.stdout) == {ord("o")}
    assert set(result.stderr) == {ord("e")}


def test_timed_out_command_leaves_no_process_behind(target: Target) -> None:
    # A unique sleep duration marks our processes; "[s]leep" keeps pgrep from matching
    # its own command line (and the wrappers around it).
    duration = f"{300 + random.random():.6f}"
    started = f"{target.scratch}/started"
    script = f"echo $$ > {shlex.quote(started)}; sleep {duration}; echo never"
    with pytest.raises(CommandTimeout) as info:
        target.transport.run(["sh", "-c", script], timeout=1)
    assert "timed out" in str(info.value)
    assert target.transport.read_file(started) is not None, "the command never started"

    def gone() -> bool:
        found = target.transport.run(["pgrep", "-f", f"[s]leep {duration}"], check=False)
        return found.exit_status == 1

    wait_until(gone, timeout=15, what=f"no process running sleep {duration}")


def test_write_file_is_atomic_with_mode_and_leaves_no_temp(target: Target) -> None:
    path = f"{target.scratch}/app.env"
    target.transport.write_file(path, b"SECRET=1\n", mode=0o600)
    assert target.transport.read_file(path) == b"SECRET=1\n"
    mode = target.transport.run(["stat", "-c", "%a", path]).text().strip()
    assert mode == "600"

    target.transport.write_file(path, b"SECRET=2\n", mode=0o640)
    assert target.transport.read_file(path) == b"SECRET=2\n"
    assert target.transport.run(["stat", "-c", "%a", path]).text().strip() == "640"
    listing = target.transport.run(["ls", "-A", target.scratch]).text().split()
    assert listing == ["app.env"]


def test_stat_reports_mode_and_owner_like_the_server_does(target: Target) -> None:
    path = f"{target.scratch}/stat-me"
    assert target.transport.stat(path) is None
    target.transport.write_file(path, b"x", mode=0o640)
    target.transport.run(["chown", "123:456", path])
    found = target.transport.stat(path)
    assert found is not None
    assert (found.mode, found.uid, found.gid) == (0o640, 123, 456)
    assert target.transport.run(["stat", "-c", "%a %u:%g", path]).text().strip() == "640 123:456"


def test_write_into_missing_directory_fails_and_leaves_nothing(target: Target) -> None:
    with pytest.raises(Exception, match="cannot write"):
        target.transport.write_file(f"{target.scratch}/missing/x", b"data")
    assert target.transport.run(["ls", "-A", target.scratch]).text().split() == []


def test_read_absent_file_is_none_and_remove_absent_is_fine(target: Target) -> None:
    path = f"{target.scratch}/nothing-here"
    assert target.transport.read_file(path) is None
    target.transport.remove_file(path)
    target.transport.write_file(path, b"x")
    target.transport.remove_file(path)
    assert target.transport.read_file(path) is None


def test_stdin_is_passed_through_byte_for_byte(target: Target) -> None:
    data = bytes(range(256)) * 4096 + b"\x00end"  # 1 MiB and a bit, binary
    result = target.transport.run(["cat"], stdin=data)
    assert result.stdout == data
    assert target.transport.run(["cat"]).stdout == b""  # no stdin: EOF, not a hang


def test_argv_arrives_verbatim_without_shell_interpretation(target: Target) -> None:
    pwned = f"{target.scratch}/pwned"
    args = [
        "two words",
        "'single'",
        '"double"',
        f"$(touch {pwned})",
        f"`touch {pwned}`",
        f"; touch {pwned}",
        f"&& touch {pwned} #",
        "*",
        "back\\slash",
        "$HOME",
        "",
        "new\nline",
    ]
    result = target.transport.run(["printf", "%s\\0", *args])
    assert result.stdout.split(b"\0")[:-1] == [a.encode() for a in args]
    assert target.transport.read_file(pwned) is None


def _echoes(stream: Stream | socket.socket) -> None:
    """``stream`` gives back a line sent to it (then is closed)."""
    try:
        stream.settimeout(10)
        stream.sendall(b"ping\n")
        received = b""
        while not received.endswith(b"\n"):
            chunk = stream.recv(64)
            assert chunk, "stream closed early"
            received += chunk
        assert received == b"ping\n"
    finally:
        stream.close()


def test_open_process_is_a_byte_stream(target: Target) -> None:
    _echoes(target.transport.open_process(["cat"]))


def _echo_socket(target: Target) -> str:
    """A Unix socket in the scratch directory whose every connection is echoed back (socat
    in the background on the target host); returns its path once it listens."""
    path = f"{target.scratch}/echo.sock"
    if isinstance(target.transport, LocalTransport) and shutil.which("socat") is None:
        pytest.skip("socat is not installed here (the lab installs it)")
    target.transport.run([
        "sh", "-c", 'socat "UNIX-LISTEN:$1,fork" EXEC:cat >/dev/null 2>&1 </dev/null &',
        "sh", path,
    ])
    wait_until(lambda: target.transport.stat(path) is not None, timeout=10,
               what="the echo socket to listen")
    return path


def test_open_unix_is_a_byte_stream_to_a_socket_on_the_host(target: Target) -> None:
    path = _echo_socket(target)
    try:
        for _ in range(2):  # a second stream to the same socket works as well
            _echoes(target.transport.open_unix(path))
    finally:
        target.transport.run(["pkill", "-f", f"UNIX-LISTEN:{path}"], check=False)


def test_open_unix_to_no_socket_is_step_failed_naming_the_path(target: Target) -> None:
    missing = f"{target.scratch}/absent.sock"
    with pytest.raises(StepFailed) as info:
        target.transport.open_unix(missing)
    assert missing in str(info.value)


def _ssh_transport(dev_host: Host) -> SSHTransport:
    return SSHTransport(dev_host, connect_timeout=10)


@pytest.mark.lab
def test_a_channel_the_server_is_slow_to_open_fails_the_command_not_the_host(
    dev_host: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    import paramiko

    transport = _ssh_transport(dev_host)
    try:
        link = transport._client.get_transport()
        assert link is not None

        def slow(*args: object, **kwargs: object) -> paramiko.Channel:
            raise paramiko.SSHException("Timeout opening channel.")  # an overloaded sshd

        monkeypatch.setattr(link, "open_session", slow)
        with pytest.raises(StepFailed) as info:
            transport.run(["true"])
        assert not isinstance(info.value, HostUnreachable)
        assert "opening an SSH channel" in str(info.value)
        monkeypatch.undo()
        assert transport.run(["true"]).ok
    finally:
        transport.close()


@pytest.mark.lab
def test_run_is_done_with_stdin_before_it_closes_the_channel(
    dev_host: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On a loaded machine the thread feeding stdin can lag behind a command that exits
    # without reading it. Its EOF racing run()'s close can reach sshd after the CLOSE, and
    # sshd drops the whole connection for an EOF on a channel it has freed ("ieof packet
    # referred to nonexistent channel"): run() must be done with stdin before closing.
    import paramiko

    import omni.transport.ssh as ssh

    events: list[tuple[str, int]] = []
    eof, close = ssh.send_eof, paramiko.Channel.close

    def lagging_eof(channel: paramiko.Channel) -> None:
        time.sleep(0.3)
        events.append(("eof", id(channel)))
        eof(channel)

    def recorded_close(channel: paramiko.Channel) -> None:
        events.append(("close", id(channel)))
        close(channel)

    monkeypatch.setattr(ssh, "send_eof", lagging_eof)
    monkeypatch.setattr(paramiko.Channel, "close", recorded_close)
    transport = _ssh_transport(dev_host)
    try:
        for _ in range(2):
            assert transport.run(["true"]).ok
        fed = [channel for what, channel in events if what == "eof"]
        assert len(fed) == 2
        for channel in fed:
            assert events.index(("eof", channel)) < events.index(("close", channel))
    finally:
        monkeypatch.undo()
        transport.close()


@pytest.mark.lab
def test_ssh_socket_sends_small_messages_without_waiting_for_acks(dev_host: Host) -> None:
    transport = _ssh_transport(dev_host)
    try:
        link = transport._client.get_transport()
        assert link is not None
        assert link.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        transport.close()


@pytest.mark.lab
def test_open_unix_falls_back_to_socat_where_sshd_refuses_streamlocal(
    dev_host: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    import paramiko
    from paramiko.common import OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    import omni.transport.streamlocal as streamlocal

    refused: list[str] = []

    def refuse(transport: paramiko.Transport, path: str, timeout: float = 10.0) -> None:
        refused.append(path)  # what sshd with AllowStreamLocalForwarding=no answers
        raise paramiko.ChannelException(OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED, "prohibited")

    monkeypatch.setattr(streamlocal, "open_streamlocal", refuse)
    transport = _ssh_transport(dev_host)
    scratch = transport.run(["mktemp", "-d", "/tmp/omni-contract.XXXXXX"]).text().strip()
    target = Target(transport, scratch)
    try:
        path = _echo_socket(target)
        for _ in range(2):
            _echoes(transport.open_unix(path))
        assert refused == [path], "after one refusal, socat is used without asking again"
    finally:
        transport.run(["pkill", "-f", f"UNIX-LISTEN:{scratch}"], check=False)
        transport.run(["rm", "-rf", "--", scratch], check=False)
        transport.close()


@pytest.mark.lab
def test_ssh_connection_loss_is_host_unreachable_never_raw(dev_host: Host) -> None:
    transport = _ssh_transport(dev_host)
    try:
        assert transport.read_file("/etc/hostname") is not None  # SFTP is open
        # The TCP connection goes away under paramiko, as when the network drops.
        link = transport._client.get_transport()
        assert link is not None
        link.sock.shutdown(socket.SHUT_RDWR)
        wait_until(lambda: not link.is_active(), timeout=10, what="paramiko to see the loss")
        operations: dict[str, Callable[[], object]] = {
            "run": lambda: transport.run(["true"]),
            "read_file": lambda: transport.read_file("/etc/hostname"),
            "write_file": lambda: transport.write_file("/tmp/omni-lost", b"x"),
            "remove_file": lambda: transport.remove_file("/tmp/omni-lost"),
            "open_process": lambda: transport.open_process(["cat"]),
            "open_tcp": lambda: transport.open_tcp("127.0.0.1", 22),
            "open_unix": lambda: transport.open_unix("/run/omni-lost.sock"),
        }
        for name, operation in operations.items():
            with pytest.raises(HostUnreachable) as info:
                operation()
            assert "host dev" in str(info.value), name
            assert info.value.fields["host"] == "dev", name
    finally:
        transport.close()


@pytest.mark.lab
def test_ssh_failure_on_a_live_connection_is_step_failed_naming_operation(
    dev_host: Host,
) -> None:
    transport = _ssh_transport(dev_host)
    try:
        channel = transport._open_session()
        channel.close()  # paramiko refuses to exec on it with an SSHException
        with pytest.raises(StepFailed) as info:
            transport._exec(channel, "true", ["echo", "sekrit"], ["sekrit"])
        assert not isinstance(info.value, HostUnreachable)
        message = str(info.value)
        assert "host dev" in message
        assert "starting `echo ***`" in message
        assert "sekrit" not in message
        assert transport.run(["true"]).ok  # the connection is still usable
    finally:
        transport.close()


@pytest.mark.lab
def test_ssh_upload_is_never_readable_by_others_even_before_its_chmod(dev_host: Host) -> None:
    """SFTP creates a file with the server's default mode before omni's chmod; omni creates
    it inside a fresh 0700 directory, so in that moment no other user can reach it."""
    transport = _ssh_transport(dev_host)
    try:
        scratch = transport.run(["mktemp", "-d", "/tmp/omni-upload.XXXXXX"]).text().strip()
        transport.run(["chmod", "755", scratch])
        sftp = transport._sftp_client()
        seen: list[int] = []
        original = sftp.open

        def spying_open(path: str, mode: str = "r", bufsize: int = -1) -> object:
            handle = original(path, mode, bufsize)
            if "w" in mode:
                seen.append(sftp.stat(path.rsplit("/", 1)[0]).st_mode & 0o777)
            return handle

        sftp.open = spying_open  # type: ignore[method-assign]
        transport.write_file(f"{scratch}/secret.json", b"{}", mode=0o600)
        assert seen == [0o700]
        assert transport.stat(f"{scratch}/secret.json").mode == 0o600  # type: ignore[union-attr]
        assert transport.run(["ls", "-A", scratch]).text().split() == ["secret.json"]
        transport.run(["rm", "-rf", "--", scratch])
    finally:
        transport.close()
