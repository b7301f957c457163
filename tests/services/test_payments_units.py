"""The payments service's pure parts: provider configuration, the breaker's states, the weighted order,
and how a provider's answer is classified (respx: our own httpx calls, no network)."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import httpx
import pytest
import respx

from services.common.settings import SettingsError, load_settings
from services.payments import providers
from services.payments.breaker import MIN_CALLS, Breaker, weighted_order
from services.payments.settings import Provider, load_payments_settings, parse_providers


def test_providers_are_names_urls_and_optional_weights():
    assert parse_providers("a=http://127.0.0.1:8101;weight=3, b=https://pg-b.example.com/") == (
        Provider(name="a", url="http://127.0.0.1:8101", weight=3),
        Provider(name="b", url="https://pg-b.example.com", weight=1),
    )


@pytest.mark.parametrize(
    "raw",
    ["", "a", "a=ftp://x", "A=http://x", "a=http://x;weight=0", "a=http://x;w=2", "a=http://x,a=http://y"],
)
def test_malformed_providers_are_refused_at_start_up(raw):
    with pytest.raises(SettingsError):
        parse_providers(raw)


def test_defaults_match_make_run():
    settings = load_payments_settings({})
    assert [(p.name, p.url) for p in settings.providers] == [
        ("a", "http://127.0.0.1:8101"),
        ("b", "http://127.0.0.1:8102"),
    ]
    assert (settings.provider_timeout, settings.status_retries, settings.reconcile_seconds) == (2.0, 2, 5.0)
    assert load_settings("payments", {}).port == 8005
    with pytest.raises(SettingsError, match="PAYMENTS_STATUS_RETRIES"):
        load_payments_settings({"PAYMENTS_STATUS_RETRIES": "many"})
    with pytest.raises(SettingsError, match="PAYMENTS_PROVIDER_TIMEOUT"):
        load_payments_settings({"PAYMENTS_PROVIDER_TIMEOUT": "0"})


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_breaker_opens_on_half_failures_then_lets_one_probe_through_after_the_pause():
    clock = Clock()
    breaker = Breaker(open_seconds=5, clock=clock)
    for ok in (True, False, True, False):
        assert breaker.acquire()
        breaker.record(ok)
    assert breaker.state == "closed"  # fewer than MIN_CALLS calls: no verdict yet
    breaker.record(False)
    assert MIN_CALLS == 5 and breaker.state == "open" and not breaker.acquire()

    clock.now = 4.9
    assert not breaker.acquire()
    clock.now = 5.0
    assert breaker.snapshot()["breaker"] == "half_open"
    assert breaker.acquire()  # the probe
    assert not breaker.acquire()  # only one at a time
    breaker.record(False)
    assert breaker.state == "open" and breaker.opened == 2

    clock.now = 10.0
    assert breaker.acquire()
    breaker.record(True)
    assert breaker.state == "closed" and breaker.acquire()
    assert breaker.snapshot() == {
        "breaker": "closed",
        "window_calls": 0,
        "window_failures": 0,
        "times_opened": 2,
    }


def test_mostly_good_calls_keep_the_breaker_closed():
    breaker = Breaker(open_seconds=5)
    for n in range(100):
        breaker.record(n % 3 != 0)  # a third fail
    assert breaker.state == "closed"


def test_providers_come_first_in_proportion_to_their_weights():
    rng = random.Random(7)
    pool = [Provider(name="a", url="http://a", weight=3), Provider(name="b", url="http://b", weight=1)]
    firsts = Counter(weighted_order(pool, rng)[0].name for _ in range(4000))
    assert 0.72 < firsts["a"] / 4000 < 0.78
    assert sorted(p.name for p in weighted_order(pool, rng)) == ["a", "b"]


PG = Provider(name="a", url="http://pg-a.test")
TIMEOUT = httpx.Timeout(1.0)


def _charge() -> providers.Answer:
    async def run() -> providers.Answer:
        async with httpx.AsyncClient() as client:
            return await providers.charge(
                client, PG, reference="pay_1", amount=100, currency="KRW", timeout=TIMEOUT
            )

    return asyncio.run(run())


@pytest.mark.parametrize(
    ("route", "outcome"),
    [
        (httpx.Response(201, json={"reference": "pay_1", "status": "approved"}), "approved"),
        (httpx.Response(200, json={"reference": "pay_1", "status": "declined"}), "declined"),
        (httpx.Response(503, json={"code": "not_processed"}), "not_processed"),
        (httpx.ConnectError("refused"), "not_processed"),
        (httpx.ConnectTimeout("no connection"), "not_processed"),
        (httpx.ReadTimeout("sent, no answer"), "unclear"),
        (httpx.RemoteProtocolError("closed"), "unclear"),
        (httpx.Response(503, json={"code": "busy"}), "unclear"),
        (httpx.Response(500, text="oops"), "unclear"),
        (httpx.Response(201, json={"reference": "pay_2", "status": "approved"}), "unclear"),
        (httpx.Response(200, json={"reference": "pay_1", "status": "processing"}), "unclear"),
    ],
    ids=[
        "approved",
        "declined",
        "explicit-not-processed",
        "refused",
        "connect-timeout",
        "read-timeout",
        "reset",
        "other-503",
        "500",
        "other-reference",
        "processing",
    ],
)
def test_only_a_refused_connection_or_an_explicit_answer_proves_nothing_was_charged(route, outcome):
    with respx.mock(assert_all_called=True) as mock:
        if isinstance(route, Exception):
            mock.post("http://pg-a.test/v1/charges").mock(side_effect=route)
        else:
            mock.post("http://pg-a.test/v1/charges").mock(return_value=route)
        assert _charge().outcome == outcome
