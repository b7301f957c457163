"""Checkout: paying a placed order through the payments service (docs/api.md "Paying an order", ADR 0017).

``order_pay``, in this order:

1. an answer already stored under the caller's ``Idempotency-Key`` is answered again (the key used for
   another request: 422);
2. the caller's order (anyone else's: 404, as for ``GET``); a paid order answers its payment (200);
3. the payments service is asked for the payment of this order's current attempt, under the key
   ``order-{id}-{placed at}-{attempt}``: every request for one attempt (a retry, a second device,
   another key) is one payment, charged at most once. A new attempt starts only after a declined
   one (nothing was charged); while a payment is pending, paying again asks for the same payment,
   which by then may have been settled by the payments service's reconciliation;
4. its answer moves the order: approved → ``paid``, declined → ``payment_failed``, pending or no
   answer in time (the payment may exist) → ``payment_pending``. A final answer (paid, failed) is
   stored under the caller's key in the same transaction as the order's new status.

The call is signed like the gateway's identity assertion (``identity.sign``, the same secret), for the
order's owner, with the scope ``payments``. Nothing was sent (the connection was refused) or the
payments service found no provider (its 503 says nothing was charged): 503 ``unavailable``, the
order is unchanged and a retry is safe.
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass
from typing import Any

import httpx
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

import identity
from legacy_django.commerce.models import IdempotentRequest, Order
from legacy_django.commerce.selectors import order_json
from legacy_django.commerce.services import IdempotencyKeyReused
from legacy_django.common.errors import NotFound, Unavailable
from legacy_django.common.responses import dumps

logger = logging.getLogger(__name__)

PAYMENTS_PATH = "/api/v1/payments"
CURRENCY = "KRW"
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_ORDER_STATUS = {
    "approved": Order.PAID,
    "declined": Order.PAYMENT_FAILED,
    "pending": Order.PAYMENT_PENDING,
}
# 201: a payment was made or declined now; 202: its outcome is not known yet.
_HTTP_STATUS = {Order.PAID: 201, Order.PAYMENT_FAILED: 201, Order.PAYMENT_PENDING: 202}


@dataclass(frozen=True, kw_only=True, slots=True)
class Checkout:
    """What ``POST /api/v1/orders/{id}/payment`` answers."""

    status: int
    body: dict[str, Any]
    replayed: bool = False


@functools.cache
def _client() -> httpx.Client:
    # One keep-alive pool per process, made after gunicorn forked; httpx.Client is thread-safe.
    return httpx.Client(limits=httpx.Limits(max_connections=64, max_keepalive_connections=16))


def _unavailable() -> Unavailable:
    return Unavailable(
        "The payment could not be taken right now and nothing was charged; retry shortly "
        "(with the same Idempotency-Key)."
    )


def _call(method: str, path: str, body: bytes, *, user_id: int, request_id: str, key: str = "") -> Any:
    """The payments service's JSON answer to a signed request; ``None`` when no answer came in time
    (the request was sent: its outcome is unknown). ``Unavailable`` when nothing can have been done."""
    headers = identity.sign(
        settings.IDENTITY_SECRET,
        method=method,
        path=path,
        query="",
        body=body,
        user_id=str(user_id),
        scopes="payments",
        request_id=request_id or "checkout",
    )
    headers["content-type"] = "application/json"
    if key:
        headers["idempotency-key"] = key
    timeout = httpx.Timeout(settings.PAYMENTS_TIMEOUT_SECONDS, connect=1.0, pool=1.0)
    try:
        response = _client().request(
            method, f"{settings.PAYMENTS_URL}{path}", content=body, headers=headers, timeout=timeout
        )
    except _NOT_SENT as error:
        logger.warning("payments service not reached (%s): nothing was sent", type(error).__name__)
        raise _unavailable() from error
    except httpx.HTTPError as error:
        logger.warning("payments service gave no answer (%s): outcome unknown", type(error).__name__)
        return None
    if response.status_code == 503:
        raise _unavailable()  # no provider took it (or the service was saturated): nothing charged
    if response.status_code >= 500:
        logger.warning("payments service answered %s: outcome unknown", response.status_code)
        return None
    if response.status_code not in (200, 201):
        raise RuntimeError(
            f"payments service refused {method} {path}: {response.status_code} {response.text}"
        )
    return response.json()


def _stored(user_id: int, key: str, fingerprint: str) -> Checkout | None:
    stored = IdempotentRequest.objects.filter(user_id=user_id, key=key).first()
    if stored is None:
        return None
    if stored.fingerprint != fingerprint:
        raise IdempotencyKeyReused()
    return Checkout(status=stored.status, body=json.loads(stored.response), replayed=True)


def _answer(order: Order, payment: dict[str, Any] | None) -> dict[str, Any]:
    return {"order": order_json(order, order.lines.order_by("id")), "payment": payment}


def _record(
    order_id: int, attempt: int, payment: dict[str, Any] | None, user_id: int, key: str, fingerprint: str
) -> Checkout:
    """Move the order by the payment's outcome (never back from paid, never to an older attempt) and,
    for a final outcome, store the answer under the caller's key, in one transaction."""
    status = _ORDER_STATUS[payment["status"]] if payment is not None else Order.PAYMENT_PENDING
    with transaction.atomic():
        order = Order.objects.select_for_update().get(pk=order_id)
        if order.status != Order.PAID and order.payment_attempts <= attempt:
            order.status, order.payment_attempts = status, attempt
            order.payment_id = payment["id"] if payment is not None else order.payment_id
            order.save(update_fields=["status", "payment_attempts", "payment_id"])
        answer = Checkout(status=_HTTP_STATUS[order.status], body=_answer(order, payment))
        if payment is not None and order.status != Order.PAYMENT_PENDING:
            IdempotentRequest.objects.create(
                user_id=user_id,
                key=key,
                fingerprint=fingerprint,
                status=answer.status,
                response=dumps(answer.body).decode(),
                order=order,
                created_at=timezone.now(),
            )
    return answer


def _key(order: Order, attempt: int) -> str:
    """The payments service's Idempotency-Key of one attempt to pay ``order``: its id, when it was
    placed (an id alone can come back after a rolled-back insert) and the attempt's number."""
    return f"order-{order.pk}-{order.created_at:%Y%m%dT%H%M%S%f}-{attempt}"


def order_pay(user_id: int, order_id: int, *, key: str, fingerprint: str, request_id: str) -> Checkout:
    """Pay the caller's order ``order_id``, or answer what ``key`` was answered (module docstring)."""
    stored = _stored(user_id, key, fingerprint)
    if stored is not None:
        return stored
    order = Order.objects.filter(pk=order_id, user_id=user_id).first()
    if order is None:
        raise NotFound(f"Order {order_id} does not exist.")
    if order.status == Order.PAID and order.payment_id:
        payment = _call(
            "GET", f"{PAYMENTS_PATH}/{order.payment_id}", b"", user_id=user_id, request_id=request_id
        )
        if payment is None:
            raise _unavailable()
        return Checkout(status=200, body=_answer(order, payment))
    attempt = order.payment_attempts + (order.status != Order.PAYMENT_PENDING)
    body = dumps({"order_id": order.pk, "amount": order.total, "currency": CURRENCY})
    payment = _call(
        "POST", PAYMENTS_PATH, body, user_id=user_id, request_id=request_id, key=_key(order, attempt)
    )
    try:
        return _record(order.pk, attempt, payment, user_id, key, fingerprint)
    except IntegrityError:
        # The same key was stored by a concurrent request for the same attempt: answer what it stored.
        stored = _stored(user_id, key, fingerprint)
        if stored is None:
            raise
        return stored
