"""A stream to a Unix socket on the server, without starting a process there.

OpenSSH's ``direct-streamlocal@openssh.com`` channel is ``direct-tcpip`` for a socket path:
sshd connects to the socket itself (as the logged-in user, so the same permissions apply as
for a process of that user). paramiko opens only the channel types it knows, so this is its
``Transport.open_channel`` with the extension's payload (OpenSSH PROTOCOL, section 2.4).
A server that refuses the extension (``AllowStreamLocalForwarding no``) answers with a
``ChannelException``, which the caller can take as "use a process instead".
"""

from __future__ import annotations

import threading
import time
from typing import Any

import paramiko
from paramiko.common import cMSG_CHANNEL_OPEN
from paramiko.message import Message

KIND = "direct-streamlocal@openssh.com"


def open_streamlocal(
    transport: paramiko.Transport, path: str, timeout: float = 10.0
) -> paramiko.Channel:
    """A channel connected to the Unix socket ``path`` on the server."""
    if not transport.is_active():
        raise paramiko.SSHException("SSH session not active")
    internals: Any = transport  # paramiko's private channel bookkeeping, as open_channel uses it
    with internals.lock:
        window_size = internals._sanitize_window_size(None)
        max_packet_size = internals._sanitize_packet_size(None)
        chanid = internals._next_channel()
        message = Message()
        message.add_byte(cMSG_CHANNEL_OPEN)
        message.add_string(KIND)
        message.add_int(chanid)
        message.add_int(window_size)
        message.add_int(max_packet_size)
        message.add_string(path)
        message.add_string("")  # reserved
        message.add_int(0)  # reserved
        channel: Any = paramiko.Channel(chanid)
        internals._channels.put(chanid, channel)
        internals.channel_events[chanid] = event = threading.Event()
        internals.channels_seen[chanid] = True
        channel._set_transport(transport)
        channel._set_window(window_size, max_packet_size)
    internals._send_user_message(message)
    deadline = time.monotonic() + timeout
    while not event.wait(0.1):
        if not transport.is_active():
            raise transport.get_exception() or paramiko.SSHException("SSH session lost")
        if time.monotonic() > deadline:
            raise paramiko.SSHException(f"timeout opening a channel to {path}")
    opened: paramiko.Channel | None = internals._channels.get(chanid)
    if opened is None:
        raise transport.get_exception() or paramiko.SSHException(
            f"the server refused a channel to {path}"
        )
    return opened
