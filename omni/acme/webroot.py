"""HTTP-01 challenge files in a host's webroot, and the pre-flight check that they are served.

Files go to ``<webroot>/.well-known/acme-challenge/<token>`` through the host's transport.
Tokens come from the ACME server: only base64url tokens are accepted, so a token can never
name a path outside the challenge directory.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from omni import probe
from omni.errors import StepFailed
from omni.transport.base import Transport

CHALLENGE_DIR = ".well-known/acme-challenge"
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


@dataclass(frozen=True)
class Webroot:
    transport: Transport
    root: str

    @property
    def directory(self) -> str:
        return f"{self.root}/{CHALLENGE_DIR}"

    def path(self, token: str) -> str:
        if not _TOKEN.fullmatch(token):
            raise StepFailed(f"ACME challenge token {token[:40]!r} is not base64url; refused")
        return f"{self.directory}/{token}"

    def put(self, token: str, content: bytes) -> None:
        path = self.path(token)
        self.transport.run(["mkdir", "-p", self.directory])
        self.transport.write_file(path, content, mode=0o644)

    def remove(self, token: str) -> None:
        self.transport.remove_file(self.path(token))


def preflight(
    webroot: Webroot,
    address: str,
    port: int,
    domains: Sequence[str],
    timeout: float = 10.0,
) -> None:
    """Prove that ``http://<domain>/.well-known/acme-challenge/`` is served from ``webroot``.

    Writes a random probe file, GETs it for every domain from ``address:port`` with
    ``Host: <domain>`` (so the machine's resolver plays no part), and always removes it.
    Raises ``StepFailed`` naming the first domain whose answer is not the probe content, and
    what came back. Places no ACME order, so it cannot burn the CA's failed-validation limit.
    """
    token = "omni-preflight-" + secrets.token_urlsafe(12)
    content = secrets.token_urlsafe(24).encode()
    webroot.put(token, content)
    try:
        for domain in domains:
            url = f"http://{domain}/{CHALLENGE_DIR}/{token}"
            try:
                status, body = probe.http_get(address, port, domain, f"/{CHALLENGE_DIR}/{token}",
                                              timeout)
            except probe.ProbeError as exc:
                raise StepFailed(
                    f"ACME pre-flight failed for {domain}: {url} via {address}:{port}: {exc}",
                    domain=domain,
                ) from None
            if status != 200 or body.strip() != content:
                shown = body[:80].decode("utf-8", "replace").strip().replace("\n", " ")
                raise StepFailed(
                    f"ACME pre-flight failed for {domain}: {url} via {address}:{port} answered "
                    f"{status} {shown!r} instead of the probe file written to {webroot.root}",
                    domain=domain,
                )
    finally:
        webroot.remove(token)
