"""Waiting for an ACME order: authorizations, then finalization, polled with backoff.

The ``acme`` library polls once a second and sleeps a full second before its first look at
a finalized order, so an order the CA completes in 100 ms still costs two seconds. Here the
first polls come sooner (50 ms, doubling to one second) and a ``Retry-After`` from the CA
is honoured, as RFC 8555 asks, but never past the deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime

import requests
from acme import errors as acme_errors
from acme import messages
from acme.client import ClientV2

FIRST_INTERVAL_SECONDS = 0.05
SLOWEST_INTERVAL_SECONDS = 1.0


class Poller:
    """Backoff between polls; raises the library's ``TimeoutError`` at the deadline."""

    def __init__(
        self,
        deadline_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._deadline = clock() + deadline_seconds
        self._interval = FIRST_INTERVAL_SECONDS

    def restart(self) -> None:
        """Start again from the shortest interval (a new phase of the order)."""
        self._interval = FIRST_INTERVAL_SECONDS

    def wait(self, response: requests.Response | None = None) -> None:
        pause = max(self._interval, retry_after_seconds(response))
        self._interval = min(self._interval * 2, SLOWEST_INTERVAL_SECONDS)
        left = self._deadline - self._clock()
        if left <= 0:
            raise acme_errors.TimeoutError()
        self._sleep(min(pause, left))


def retry_after_seconds(response: requests.Response | None) -> float:
    """The ``Retry-After`` the CA asked for (seconds or an HTTP date), 0 when none."""
    value = response.headers.get("Retry-After", "") if response is not None else ""
    if not value:
        return 0.0
    try:
        return max(0.0, float(int(value)))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return 0.0
    return max(0.0, when.timestamp() - time.time())


def poll_authorizations(
    client: ClientV2, orderr: messages.OrderResource, poller: Poller
) -> messages.OrderResource:
    """Every authorization of the order, polled until it leaves ``pending``; raises the
    library's ``ValidationError`` when one did not become valid."""
    done = []
    for authzr in orderr.authorizations:
        response: requests.Response | None = None
        while authzr.body.status == messages.STATUS_PENDING:
            poller.wait(response)
            authzr, response = client.poll(authzr)
        done.append(authzr)
    failed = [a for a in done if a.body.status != messages.STATUS_VALID]
    if failed:
        raise acme_errors.ValidationError(failed)
    updated: messages.OrderResource = orderr.update(authorizations=done)
    return updated


def finalize(client: ClientV2, orderr: messages.OrderResource, poller: Poller) -> str:
    """Send the CSR, wait for the certificate, return the full chain (PEM)."""
    orderr = client.begin_finalization(orderr)
    poller.restart()
    body = orderr.body
    response: requests.Response | None = None
    while not (body.status == messages.STATUS_VALID and body.certificate):
        if body.status == messages.STATUS_INVALID:
            if body.error is not None:
                raise acme_errors.IssuanceError(body.error)
            raise acme_errors.Error("the CA marked the order invalid without a reason")
        poller.wait(response)
        response = _post_as_get(client, orderr.uri)
        body = messages.Order.from_json(response.json())
    return _post_as_get(client, body.certificate).text


def _post_as_get(client: ClientV2, url: str) -> requests.Response:
    response: requests.Response = client.net.post(
        url, None, new_nonce_url=client.directory.newNonce
    )
    return response
