"""The health gate: the tenant answers through its host's nginx over verified HTTPS."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from omni.engine.engine import Progress
from omni.engine.step import Step, Verb
from omni.errors import HealthGateFailed
from omni.probe import ProbeError, https_get
from omni.tenant.spec import TenantSpec

_POLL_SECONDS = 1.0


def health_gate(
    spec: TenantSpec,
    progress: Progress,
    *,
    monotonic: Callable[[], float] = time.monotonic,
    wait: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Poll ``GET https://<primary domain><health path>`` until 200 or the deadline.

    Connects to the host's nginx address with SNI and Host set to the domain and verifies
    the certificate (against ``health.ca_bundle`` or the system store). Raises
    ``HealthGateFailed`` with the last status or error seen.
    """
    host = spec.host
    address = host.nginx.listen_address or host.address
    step = Step("health.gate", Verb.RUN, f"GET {spec.public_url}{host.health.path} -> 200")
    progress.step_started(step)
    deadline = monotonic() + host.health.deadline_seconds
    started = monotonic()
    last = "no answer yet"
    while True:
        try:
            response = https_get(
                address,
                host.nginx.https_port,
                spec.primary_domain,
                host.health.path,
                ca_bundle=host.health.ca_bundle,
                timeout=10.0,
            )
            if response.status == 200:
                progress.step_finished(step, None)
                return {
                    "url": f"{spec.public_url}{host.health.path}",
                    "status": 200,
                    "seconds": round(monotonic() - started, 2),
                }
            last = f"HTTP {response.status}"
        except ProbeError as exc:
            last = str(exc)
        if monotonic() >= deadline:
            message = (
                f"health gate: {spec.public_url}{host.health.path} did not answer 200 within "
                f"{host.health.deadline_seconds:.0f}s (last: {last})"
            )
            progress.step_finished(step, message)
            raise HealthGateFailed(message, step="health.gate")
        wait(_POLL_SECONDS)
