"""The tenant's TLS certificate (resource key ``acme.certificate``).

observe: facts of ``spec.fullchain_path`` (SANs, expiry, issuer, whether ``privkey.pem``
         matches), or None when absent. Reads the private key only to compare public halves.
plan:    pure, on ``spec.now`` and ``host.acme.renew_before_days``: CREATE when absent;
         REPLACE when the names differ from the tenant's domains, when expiry is inside the
         renewal window, or when the key does not match; else NOOP. So no order is placed
         while the current certificate is valid and outside the renewal window.
apply:   pre-flight (the challenge URL of every domain serves the webroot) and one ACME
         order through HTTP-01, outside any lock. Then, holding the host's nginx lock:
         ``privkey.pem`` (0600) and ``fullchain.pem`` (0644) go into a fresh 0700 version
         directory under ``spec.cert_dir`` and ``live`` is swapped to it in one rename
         (``omni.acme.store``), so nginx never sees a key and a chain that do not belong
         together, however the run dies. If the tenant's vhost on disk uses the ``live``
         paths, nginx is tested (failure: ``live`` swapped back, if there was a previous
         version) and reloaded. Versions other than the new one and the previous one are
         pruned; then the step waits until nginx serves the new certificate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from omni import probe
from omni.acme import client as acme_client
from omni.acme import store
from omni.acme.certinfo import CertState, cert_state
from omni.acme.webroot import Webroot, preflight
from omni.engine.step import FieldChange, Step, Verb, noop
from omni.errors import StepFailed
from omni.nginx import (
    NGINX_LOCK,
    NGINX_LOCK_WAIT_SECONDS,
    InstallOptions,
    nginx_error_line,
    wait_live,
)
from omni.resources.vhost import leaf_der, nginx_address

if TYPE_CHECKING:
    from omni.hosts.session import HostSession
    from omni.tenant.spec import TenantSpec

KEY = "acme.certificate"
ACME_ACCOUNT_LOCK = "acme-account"


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _when(moment: datetime) -> str:
    return _utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ")


def plan_certificate(
    current: CertState | None,
    domains: tuple[str, ...] | list[str],
    now: datetime,
    renew_before_days: int,
    directory_url: str,
) -> list[Step]:
    """The certificate's steps. Pure: same inputs, same steps."""
    wanted = ", ".join(sorted(domains))
    if current is None:
        return [
            Step(
                resource=KEY,
                verb=Verb.CREATE,
                summary=f"issue certificate for {wanted} from {directory_url}",
                changes=(
                    FieldChange("domains", None, wanted),
                    FieldChange("expires", None, "new certificate"),
                ),
            )
        ]
    have = ", ".join(current.domains)
    expires = _utc(current.not_after)
    renew_from = expires - timedelta(days=renew_before_days)
    changes: list[FieldChange] = []
    reasons: list[str] = []
    if not current.parseable:
        reasons.append("current file does not parse")
        changes.append(FieldChange("certificate", "unparseable", "new certificate"))
    else:
        if tuple(sorted(domains)) != current.domains:
            reasons.append("names changed")
            changes.append(FieldChange("domains", have, wanted))
        if _utc(now) >= renew_from:
            state = "expired" if _utc(now) >= expires else "inside renewal window"
            reasons.append(f"{state} (renew {renew_before_days} days before expiry)")
            changes.append(FieldChange("expires", _when(expires), "renewed"))
        if current.trusted is False:
            reasons.append("chain not trusted by health.ca_bundle")
            changes.append(FieldChange("issuer", current.issuer, "trusted CA"))
        if not current.key_matches:
            reasons.append("private key missing or not matching")
            changes.append(FieldChange("private key", "not matching", "new key"))
    if changes:
        return [
            Step(
                resource=KEY,
                verb=Verb.REPLACE,
                summary=f"re-issue certificate for {wanted}: {'; '.join(reasons)}",
                changes=tuple(changes),
                detail={"issuer": current.issuer},
            )
        ]
    return [
        noop(
            KEY,
            f"certificate for {wanted} valid until {_when(expires)} "
            f"(renewal from {_when(renew_from)})",
        )
    ]


@dataclass
class CertificateResource:
    spec: TenantSpec
    order_deadline_seconds: float = 90.0
    preflight_timeout: float = 10.0
    reload_options: InstallOptions = field(default_factory=InstallOptions)
    key: str = KEY
    # False: test nginx with the new certificate but leave the reload (and the check that
    # it is served) to the caller, which reloads once for many tenants (``certs renew``).
    reload: bool = True

    def observe(self, session: HostSession) -> CertState | None:
        transport = session.transport
        fullchain = transport.read_file(self.spec.fullchain_path)
        if fullchain is None:
            return None
        bundle = self.spec.host.health.ca_bundle
        trust = Path(bundle).read_bytes() if bundle else None
        return cert_state(fullchain, transport.read_file(self.spec.privkey_path), trust)

    def plan(self, current: CertState | None) -> list[Step]:
        acme = self.spec.host.acme
        return plan_certificate(
            current,
            self.spec.tenant.domains,
            self.spec.now,
            acme.renew_before_days,
            acme.directory_url,
        )

    def apply(self, session: HostSession, step: Step) -> None:
        spec = self.spec
        host = spec.host
        transport = session.transport
        domains = list(spec.tenant.domains)
        preflight(
            Webroot(transport, host.acme.webroot),
            nginx_address(spec),
            host.nginx.http_port,
            domains,
            self.preflight_timeout,
        )
        issued = acme_client.issue(
            transport, host.acme, domains, self.order_deadline_seconds,
            account_lock=lambda: session.lock(ACME_ACCOUNT_LOCK, wait_seconds=120,
                                              purpose="acme account"),
        )
        # Other tenants' nginx changes hold this lock only briefly: queue rather than fail.
        with session.lock(NGINX_LOCK, wait_seconds=NGINX_LOCK_WAIT_SECONDS):
            reloaded = self._install_locked(session, issued)
            if reloaded:
                leaf = leaf_der(issued.fullchain_pem)
                reason = wait_live(lambda: self.serving(leaf), self.reload_options)
                if reason is not None:
                    raise StepFailed(f"certificate written and nginx reloaded, but: {reason}")

    def _install_locked(self, session: HostSession, issued: acme_client.Issued) -> bool:
        """Write a new version, swap ``live``, test and reload nginx if the vhost uses
        ``live``, prune. Returns whether nginx was reloaded. Caller holds the nginx lock."""
        spec = self.spec
        transport = session.transport
        cert_dir = spec.cert_dir
        version = store.write_version(transport, cert_dir, issued.privkey_pem, issued.fullchain_pem)
        previous = store.live_version(transport, cert_dir)
        store.point_live(transport, cert_dir, version)
        # A vhost from before versioned directories points at files directly in cert_dir:
        # a reload would not load the new certificate (the vhost step re-renders it), and
        # those files must stay until it has.
        vhost = transport.read_file(spec.vhost_path) or b""
        uses_live = spec.fullchain_path.encode() in vhost
        if uses_live:
            self._test_and_reload(session, previous, reload=self.reload)
        store.prune(
            transport,
            cert_dir,
            keep=(version, previous),
            legacy_in_use=f"{cert_dir}/{store.FULLCHAIN}".encode() in vhost,
        )
        return uses_live and self.reload

    def serving(self, leaf: bytes | None) -> str | None:
        """None when nginx serves ``leaf`` (DER) for the primary domain, else why not."""
        spec = self.spec
        try:
            served = probe.served_certificate(
                nginx_address(spec),
                spec.host.nginx.https_port,
                spec.primary_domain,
                spec.host.health.ca_bundle,
                self.preflight_timeout,
            )
        except probe.ProbeError as exc:
            return str(exc)
        return None if served == leaf else "nginx still serves the previous certificate"

    def _test_and_reload(
        self, session: HostSession, previous: str | None, *, reload: bool = True
    ) -> None:
        """``nginx -t`` then (with ``reload``) reload; on a failed test ``live`` goes back
        to ``previous``."""
        nginx = self.spec.host.nginx
        transport = session.transport
        timeout = self.reload_options.command_timeout_seconds
        tested = transport.run(nginx.test_command, check=False, timeout=timeout)
        if not tested.ok:
            if previous is None:
                undone = "there was no previous certificate to restore"
            else:
                store.point_live(transport, self.spec.cert_dir, previous)
                undone = "previous certificate restored"
            raise StepFailed(
                f"certificate issued but nginx config test failed ({undone}; nginx not "
                f"reloaded): {nginx_error_line(tested)}"
            )
        if not reload:
            return
        reloaded = transport.run(nginx.reload_command, check=False, timeout=timeout)
        if not reloaded.ok:
            raise StepFailed(
                f"certificate written but nginx reload failed: {nginx_error_line(reloaded)}"
            )


Certificate = CertificateResource  # the name omni.tenant.resources uses
