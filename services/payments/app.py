"""The payments service: the distributor in front of the payment providers, on PAYMENTS_URL (:8005).

Called by the monolith's checkout (never by apps: the gateway has no route to it), with an identity
assertion signed by the monolith that carries the ``payments`` scope (docs/api.md, "Payments").

    POST /api/v1/payments        Idempotency-Key, {"order_id", "amount", "currency"} → 201 payment
    GET  /api/v1/payments/{id}   → 200 payment
    GET  /_payments/providers    each provider's weight and breaker in this worker (for ops)
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from services.common.app import build_app, methods, principal_of, settings_of
from services.common.db import Database
from services.common.errors import INVALID_CREDENTIALS, Forbidden, NotFound, Unauthenticated, ValidationFailed
from services.common.params import parse_json_body
from services.common.render import json_response
from services.common.settings import ServiceSettings, load_settings
from services.payments.distributor import Distributor
from services.payments.reconcile import reconcile_forever
from services.payments.settings import PaymentsSettings, load_payments_settings
from services.payments.tables import ensure_schema

SCOPE = "payments"
CURRENCIES = ("KRW",)
FIELDS = ("order_id", "amount", "currency")
MAX_ID = 10**18 - 1
MAX_AMOUNT = 10**12
MAX_KEY_LENGTH = 255


def distributor_of(request: Request) -> Distributor:
    distributor: Distributor = request.app.state.distributor
    return distributor


def require_service(request: Request) -> None:
    """Only a caller whose assertion verified and carries the ``payments`` scope (the monolith)."""
    principal = principal_of(request)
    if principal.credentials != "identity":
        raise (
            Unauthenticated(INVALID_CREDENTIALS) if principal.credentials == "invalid" else Unauthenticated()
        )
    if SCOPE not in principal.scopes:
        raise Forbidden("Payments are taken by the shop's services only (scope payments).")


def parse_idempotency_key(raw: str | None) -> str:
    """Required: 1 to 255 visible ASCII characters, as for orders."""
    if raw is None:
        raise ValidationFailed(
            {"Idempotency-Key": ["is required"]}, message="Missing Idempotency-Key header."
        )
    if not 1 <= len(raw) <= MAX_KEY_LENGTH or not all("!" <= char <= "~" for char in raw):
        raise ValidationFailed(
            {"Idempotency-Key": [f"must be 1 to {MAX_KEY_LENGTH} visible ASCII characters"]},
            message="Invalid Idempotency-Key header.",
        )
    return raw


def validated(data: dict[str, Any]) -> tuple[int, int, str]:
    """``order_id`` (a positive id), ``amount`` (whole won, 1 to 10^12), ``currency`` (KRW); nothing else."""
    errors: dict[str, list[str]] = {}
    unknown = [name for name in data if name not in FIELDS]
    for name in unknown[:5]:
        errors[name] = ["is not a field of a payment"]
    order_id, amount, currency = data.get("order_id"), data.get("amount"), data.get("currency")
    if order_id is None:
        errors["order_id"] = ["is required"]
    elif type(order_id) is not int or not 1 <= order_id <= MAX_ID:
        errors["order_id"] = ["must be a positive integer"]
    if amount is None:
        errors["amount"] = ["is required"]
    elif type(amount) is not int or not 1 <= amount <= MAX_AMOUNT:
        errors["amount"] = [f"must be an integer from 1 to {MAX_AMOUNT} (whole units)"]
    if currency is None:
        errors["currency"] = ["is required"]
    elif currency not in CURRENCIES:
        errors["currency"] = [f"must be one of: {', '.join(CURRENCIES)}"]
    if errors:
        raise ValidationFailed(errors)
    return order_id, amount, currency  # type: ignore[return-value]


async def create(request: Request) -> Response:
    require_service(request)
    key = parse_idempotency_key(request.headers.get("idempotency-key"))
    data, body = await parse_json_body(request, settings_of(request).max_body_bytes)
    order_id, amount, currency = validated(data)
    payment, replayed = await distributor_of(request).pay(
        key=key,
        fingerprint=hashlib.sha256(body).hexdigest(),
        order_id=order_id,
        amount=amount,
        currency=currency,
    )
    headers = {"Location": f"/api/v1/payments/{payment['id']}"}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return json_response(payment, status=201, headers=headers)


async def detail(request: Request) -> Response:
    require_service(request)
    payment_id = request.path_params["payment_id"]
    payment = await distributor_of(request).get(payment_id)
    if payment is None:
        raise NotFound(f"Payment {payment_id} does not exist.")
    return json_response(payment)


async def providers_view(request: Request) -> Response:
    return json_response({"providers": distributor_of(request).providers_view()})


def create_app(
    settings: ServiceSettings | None = None, payments: PaymentsSettings | None = None
) -> Starlette:
    payments_settings = payments or load_payments_settings()

    @asynccontextmanager
    async def distributor(app: Starlette) -> AsyncIterator[None]:
        db: Database = app.state.db
        await ensure_schema(db)
        limits = httpx.Limits(max_connections=256, max_keepalive_connections=64)
        async with httpx.AsyncClient(limits=limits) as client:
            app.state.distributor = Distributor(db, payments_settings, client)
            task = None
            if payments_settings.reconcile_seconds > 0:
                task = asyncio.create_task(
                    reconcile_forever(app.state.distributor, payments_settings.reconcile_seconds)
                )
            try:
                yield
            finally:
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

    return build_app(
        settings or load_settings("payments"),
        [
            ("/api/v1/payments", methods(POST=create)),
            ("/api/v1/payments/{payment_id}", methods(GET=detail)),
            ("/_payments/providers", methods(GET=providers_view)),
        ],
        distributor,
    )
