"""The tenant's nginx vhost (resource key ``nginx.vhost``).

observe: the current bytes of ``spec.vhost_path`` (None if absent) and, when they are the
         desired bytes, whether they are live (served digest, and served certificate equal
         to the one on disk): a run killed between writing and reloading, or a renewed
         certificate nginx never reloaded, shows up here.
plan:    NOOP when equal to the rendered vhost and live; RELOAD when equal but not live;
         else CREATE/UPDATE with a unified diff.
apply:   transactional install (:mod:`omni.nginx`): nginx -t, reload, then proof that the new
         file is live: over HTTP and HTTPS (SNI = primary domain, certificate verified for it
         and covering every domain) the exact-match location ``/.well-known/omni-vhost``
         answers this file's digest. Any failure restores the previous bytes.

The HTTPS server needs the tenant's certificate on disk, so ``acme.certificate`` must be
applied before this resource (the host's catch-all ACME server answers the first challenge).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from omni import probe
from omni.engine.step import Step, Verb, noop
from omni.errors import StepFailed
from omni.nginx import NGINX_LOCK, NGINX_LOCK_WAIT_SECONDS, InstallOptions, install_config
from omni.render import LIVE_CHECK_PATH, render_vhost, vhost_digest
from omni.resources.files import unified_diff

if TYPE_CHECKING:
    from omni.hosts.session import HostSession
    from omni.tenant.spec import TenantSpec

KEY = "nginx.vhost"


def nginx_address(spec: TenantSpec) -> str:
    """Where the host's nginx answers, as seen from the machine running omni."""
    return spec.host.nginx.listen_address or spec.host.address


@dataclass(frozen=True)
class VhostState:
    content: bytes | None
    not_live: str | None = None  # why the (desired) file on disk is not what nginx serves


def leaf_der(fullchain_pem: bytes | None) -> bytes | None:
    if fullchain_pem is None:
        return None
    try:
        cert = x509.load_pem_x509_certificate(fullchain_pem)
    except ValueError:
        return None
    return cert.public_bytes(serialization.Encoding.DER)


@dataclass
class VhostResource:
    spec: TenantSpec
    options: InstallOptions = field(default_factory=InstallOptions)
    probe_timeout: float = 5.0
    key: str = KEY

    def __post_init__(self) -> None:
        # Rendering validates every value; bad input fails here, before any connection.
        self.content = render_vhost(self.spec)
        self.digest = vhost_digest(self.content)

    @property
    def path(self) -> str:
        return self.spec.vhost_path

    def observe(self, session: HostSession) -> VhostState:
        transport = session.transport
        content = transport.read_file(self.path)
        if content != self.content.encode():
            return VhostState(content)
        leaf = leaf_der(transport.read_file(self.spec.fullchain_path))
        return VhostState(content, self.check_live(leaf))

    def plan(self, state: VhostState | bytes | None) -> list[Step]:
        if not isinstance(state, VhostState):
            state = VhostState(state)
        current = state.content
        desired = self.content.encode()
        if current == desired and state.not_live is not None:
            return [
                Step(
                    resource=self.key,
                    verb=Verb.RELOAD,
                    summary=f"reload nginx: {self.path} is in place but not serving "
                    f"({state.not_live})",
                    detail={"path": self.path, "digest": self.digest},
                )
            ]
        if current == desired:
            return [noop(self.key, f"{self.path} up to date")]
        verb = Verb.CREATE if current is None else Verb.UPDATE
        before = None if current is None else current.decode("utf-8", "replace")
        return [
            Step(
                resource=self.key,
                verb=verb,
                summary=f"{verb.value} nginx vhost {self.path} for "
                f"{', '.join(self.spec.tenant.domains)}",
                diff=unified_diff(self.path, before, self.content),
                detail={"path": self.path, "digest": self.digest},
            )
        ]

    def apply(self, session: HostSession, step: Step) -> None:
        transport = session.transport
        leaf = leaf_der(transport.read_file(self.spec.fullchain_path))
        if leaf is None:
            raise StepFailed(
                f"certificate {self.spec.fullchain_path} is missing: the acme.certificate "
                "step must succeed before the vhost is installed",
                path=self.path,
            )
        # One nginx change at a time per host: another tenant's half-installed file would
        # fail this run's `nginx -t`, and reloads must not interleave.
        with session.lock(NGINX_LOCK, wait_seconds=NGINX_LOCK_WAIT_SECONDS):
            install_config(
                transport,
                self.spec.host.nginx,
                self.path,
                self.content.encode(),
                lambda: self.check_live(leaf),
                self.options,
            )

    def check_live(self, expected_leaf: bytes | None = None) -> str | None:
        """None when both servers of this exact file answer, else why not.

        With ``expected_leaf`` (DER), the served certificate must also be that one, which
        catches a renewed certificate that nginx has not loaded yet.
        """
        spec = self.spec
        nginx = spec.host.nginx
        address = nginx_address(spec)
        domain = spec.primary_domain
        expected = (self.digest or "").encode()
        try:
            status, body = probe.http_get(
                address, nginx.http_port, domain, LIVE_CHECK_PATH, self.probe_timeout
            )
            if status != 200 or body.strip() != expected:
                return f"http://{domain}{LIVE_CHECK_PATH} answered {status} {_short(body)}"
            answer = probe.https_get(
                address,
                nginx.https_port,
                domain,
                LIVE_CHECK_PATH,
                spec.host.health.ca_bundle,
                self.probe_timeout,
            )
        except probe.ProbeError as exc:
            return str(exc)
        if answer.status != 200 or answer.body.strip() != expected:
            return (
                f"https://{domain}{LIVE_CHECK_PATH} answered {answer.status} {_short(answer.body)}"
            )
        missing = [d for d in spec.tenant.domains if d not in answer.peer_sans]
        if missing:
            return f"served certificate does not cover {', '.join(missing)}"
        if expected_leaf is not None:
            try:
                served = probe.served_certificate(
                    address,
                    nginx.https_port,
                    domain,
                    spec.host.health.ca_bundle,
                    self.probe_timeout,
                )
            except probe.ProbeError as exc:
                return str(exc)
            if served != expected_leaf:
                return f"nginx serves another certificate than {spec.fullchain_path}"
        return None


def _short(body: bytes) -> str:
    text = body[:60].decode("utf-8", "replace").strip().replace("\n", " ")
    return repr(text)


Vhost = VhostResource  # the name omni.tenant.resources uses
