"""The ACME poller's backoff, Retry-After and deadline (pure: a fake clock and sleep)."""

from __future__ import annotations

import pytest
import requests
from acme import errors as acme_errors

from omni.acme.polling import (
    FIRST_INTERVAL_SECONDS,
    SLOWEST_INTERVAL_SECONDS,
    Poller,
    retry_after_seconds,
)


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _response(retry_after: str | None) -> requests.Response:
    response = requests.Response()
    if retry_after is not None:
        response.headers["Retry-After"] = retry_after
    return response


def test_intervals_start_short_and_double_up_to_the_slowest() -> None:
    fake = FakeTime()
    poller = Poller(60, clock=fake.clock, sleep=fake.sleep)
    for _ in range(8):
        poller.wait()
    assert fake.slept[0] == FIRST_INTERVAL_SECONDS
    assert fake.slept[1] == 2 * FIRST_INTERVAL_SECONDS
    assert fake.slept == sorted(fake.slept)
    assert fake.slept[-1] == SLOWEST_INTERVAL_SECONDS


def test_restart_goes_back_to_the_shortest_interval() -> None:
    fake = FakeTime()
    poller = Poller(60, clock=fake.clock, sleep=fake.sleep)
    for _ in range(5):
        poller.wait()
    poller.restart()
    poller.wait()
    assert fake.slept[-1] == FIRST_INTERVAL_SECONDS


def test_a_retry_after_from_the_ca_is_honoured() -> None:
    fake = FakeTime()
    poller = Poller(60, clock=fake.clock, sleep=fake.sleep)
    poller.wait(_response("3"))
    assert fake.slept == [3.0]


def test_never_sleeps_past_the_deadline_then_times_out() -> None:
    fake = FakeTime()
    poller = Poller(2, clock=fake.clock, sleep=fake.sleep)
    poller.wait(_response("30"))
    assert fake.slept == [2.0]
    with pytest.raises(acme_errors.TimeoutError):
        poller.wait()


@pytest.mark.parametrize(
    ("header", "seconds"),
    [(None, 0.0), ("", 0.0), ("7", 7.0), ("-4", 0.0), ("soon", 0.0),
     ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0)],
)
def test_retry_after_header_forms(header: str | None, seconds: float) -> None:
    assert retry_after_seconds(_response(header)) == seconds


def test_retry_after_as_a_future_http_date() -> None:
    import time
    from email.utils import formatdate

    later = formatdate(time.time() + 30, usegmt=True)
    assert 25 <= retry_after_seconds(_response(later)) <= 31
