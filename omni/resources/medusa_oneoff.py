"""One-off containers of a tenant's Medusa image, run once its app is up.

Onboarding steps (the admin invite, the storefront key) run Medusa's own CLI in a
throw-away container with the app's environment, after the app accepts connections: the
app's start-up seeds the store and its default sales channel, and a second process seeding
them at the same moment could race it. Logs hold secrets (invite tokens): callers parse
them and put only a redacted tail in errors.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from omni.errors import StepFailed

if TYPE_CHECKING:
    from omni.hosts.session import HostSession

ONEOFF_TIMEOUT_SECONDS = 300.0
ONBOARD_SCRIPT_IN_CONTAINER = "/omni/onboard.js"
_LOG_LINES_IN_ERROR = 6
# A JWT (header.payload.signature, base64url): masked in any log text omni repeats.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


def mask_tokens(text: str) -> str:
    """``text`` with every JWT-shaped value masked."""
    return _JWT.sub("********", text)


@dataclass(frozen=True)
class MedusaOneOff:
    """How to run a one-off container of the tenant's image (name, env, labels) and where
    the app listens (``app_endpoint``), so a run can wait for it first."""

    container_name: str
    image: str
    env: Mapping[str, str] = field(repr=False)
    labels: Mapping[str, str]
    app_endpoint: tuple[str, int]
    ready_deadline_seconds: float = 120.0
    network_mode: str = "host"  # the tenant's namespace: "container:<its gateway>"

    def run(
        self,
        session: HostSession,
        command: Sequence[str],
        *,
        what: str,
        redact: Callable[[str], str],
        extra_env: Mapping[str, str] | None = None,
        mounts: Sequence[tuple[str, str, bool]] = (),
    ) -> str:
        """Wait for the app, run ``command`` to completion, return its logs as text.

        Raises ``StepFailed`` naming ``what`` when the app never listens or the command
        exits non-zero (with the last log lines, secrets and tokens masked). The container
        is always removed.
        """
        from omni.hosts.docker import ContainerSpec

        self.wait_for_app(session)
        exit_code, raw = session.docker().run_once(
            ContainerSpec(
                name=self.container_name,
                image=self.image,
                command=list(command),
                env={**self.env, **(extra_env or {})},
                labels=dict(self.labels),
                network_mode=self.network_mode,
                restart_policy=None,
                mounts=mounts,
            ),
            timeout=ONEOFF_TIMEOUT_SECONDS,
        )
        logs = raw.decode("utf-8", "replace")
        if exit_code != 0:
            raise StepFailed(
                f"{what} exited {exit_code}: " + log_tail(logs, redact), exit_status=exit_code
            )
        return logs

    def wait_for_app(self, session: HostSession) -> None:
        """Return once the app answers HTTP (any status) on its published port; the port
        itself always accepts (the tenant's gateway listens on it), so only an answer
        counts. ``StepFailed`` after the deadline."""
        address, port = self.app_endpoint
        deadline = time.monotonic() + self.ready_deadline_seconds
        while True:
            reason = _http_answer(session, address, port)
            if reason is None:
                return
            if time.monotonic() >= deadline:
                raise StepFailed(
                    f"the Medusa app did not answer on {address}:{port} within "
                    f"{self.ready_deadline_seconds:g}s ({reason})"
                )
            time.sleep(0.1)


def _http_answer(session: HostSession, address: str, port: int) -> str | None:
    """None when ``GET /health`` on ``address:port`` gets an HTTP status line, else why not."""
    try:
        stream = session.transport.open_tcp(address, port, timeout=2.0)
    except OSError as exc:
        return str(exc) or type(exc).__name__
    except StepFailed as exc:
        return exc.message
    try:
        stream.settimeout(5.0)
        stream.sendall(b"GET /health HTTP/1.0\r\nUser-Agent: omni\r\n\r\n")
        head = stream.recv(16)
    except OSError as exc:
        return str(exc) or type(exc).__name__
    finally:
        stream.close()
    return None if head.startswith(b"HTTP/") else "connection closed without an answer"


def log_tail(logs: str, redact: Callable[[str], str]) -> str:
    """The last log lines on one line, secrets and tokens masked."""
    lines = [line for line in logs.strip().splitlines() if line.strip()]
    return mask_tokens(redact(" | ".join(lines[-_LOG_LINES_IN_ERROR:])))[:1000]
