"""Calls to a payment provider (PG), each one classified by what it proves about the money.

The provider API (what the simulator serves, ``services/payments/simulator.py``)::

    POST /v1/charges {"reference", "amount", "currency"}   201 (200 again for a known reference)
         {"reference", "status": "approved" | "declined", ...}; idempotent on ``reference``
         503 {"code": "not_processed"}: explicitly not processed
    GET  /v1/charges/{reference}          200 {"status": "approved" | "declined" | "processing" | "refunded"}
                                          404 {"code": "not_found"}: never received
    POST /v1/charges/{reference}/refund   200 {"status": "refunded"}

A charge's ``outcome`` (ADR 0017):

- ``approved`` / ``declined``: the provider said so;
- ``not_processed``: the provider certainly did not charge: the connection was refused or never
  opened (nothing was sent), or it answered the explicit ``not_processed``. Only this allows trying
  another provider;
- ``unclear``: anything else (a timeout after sending, a reset, a 5xx, an unreadable answer): it may
  have charged. The caller asks this provider for the status of the reference before deciding.

A status's ``outcome``: ``approved``, ``declined``, ``processing``, ``refunded``, ``not_found`` (never
received: it did not charge), or ``unknown`` (no usable answer).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx

from services.payments.settings import Provider

# Nothing was sent: the connection was refused or never opened, or no pooled connection was free.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
SETTLED = ("approved", "declined")


@dataclass(frozen=True, kw_only=True, slots=True)
class Answer:
    outcome: str
    ms: float
    detail: str


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _failure(error: Exception) -> str:
    return type(error).__name__


async def charge(
    client: httpx.AsyncClient,
    provider: Provider,
    *,
    reference: str,
    amount: int,
    currency: str,
    timeout: httpx.Timeout,
) -> Answer:
    started = time.monotonic()
    body = {"reference": reference, "amount": amount, "currency": currency}
    try:
        response = await client.post(f"{provider.url}/v1/charges", json=body, timeout=timeout)
    except _NOT_SENT as error:
        return Answer(outcome="not_processed", ms=_ms(started), detail=_failure(error))
    except httpx.HTTPError as error:
        return Answer(outcome="unclear", ms=_ms(started), detail=_failure(error))
    data = _json(response)
    status = data.get("status")
    if response.status_code in (200, 201) and status in SETTLED and data.get("reference") == reference:
        return Answer(outcome=str(status), ms=_ms(started), detail=f"HTTP {response.status_code}")
    if response.status_code == 503 and data.get("code") == "not_processed":
        return Answer(outcome="not_processed", ms=_ms(started), detail="HTTP 503 not_processed")
    return Answer(outcome="unclear", ms=_ms(started), detail=f"HTTP {response.status_code}")


async def status(
    client: httpx.AsyncClient, provider: Provider, *, reference: str, timeout: httpx.Timeout
) -> Answer:
    started = time.monotonic()
    try:
        response = await client.get(f"{provider.url}/v1/charges/{reference}", timeout=timeout)
    except httpx.HTTPError as error:
        return Answer(outcome="unknown", ms=_ms(started), detail=_failure(error))
    data = _json(response)
    if response.status_code == 404 and data.get("code") == "not_found":
        return Answer(outcome="not_found", ms=_ms(started), detail="HTTP 404")
    known = ("approved", "declined", "processing", "refunded")
    if response.status_code == 200 and data.get("status") in known and data.get("reference") == reference:
        return Answer(outcome=str(data["status"]), ms=_ms(started), detail="HTTP 200")
    return Answer(outcome="unknown", ms=_ms(started), detail=f"HTTP {response.status_code}")


async def refund(
    client: httpx.AsyncClient, provider: Provider, *, reference: str, timeout: httpx.Timeout
) -> Answer:
    started = time.monotonic()
    try:
        response = await client.post(f"{provider.url}/v1/charges/{reference}/refund", timeout=timeout)
    except httpx.HTTPError as error:
        return Answer(outcome="unknown", ms=_ms(started), detail=_failure(error))
    data = _json(response)
    if response.status_code == 200 and data.get("status") == "refunded":
        return Answer(outcome="refunded", ms=_ms(started), detail="HTTP 200")
    return Answer(outcome="unknown", ms=_ms(started), detail=f"HTTP {response.status_code}")


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)
