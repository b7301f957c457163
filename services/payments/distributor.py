"""The payment distributor: one payment per Idempotency-Key, charged by at most one provider.

``Distributor.pay`` (ADR 0017):

1. The key is claimed with the payment in one transaction (``payments_idempotency`` is unique on the
   key; the payment row is written as ``processing`` before any provider is called, and its id is the
   merchant reference every provider gets). A request whose key is already there gets that
   payment (another body: 422); if the first request is still charging, it waits for its outcome.
2. Providers are tried in a random order weighted by their configured weights, skipping any whose
   breaker is open. A provider that answers approved or declined settles the payment.
3. **Failover only when the provider certainly did not charge**: the connection was refused or never
   opened, or it answered the explicit ``not_processed``. After an unclear outcome (a timeout after
   sending, a reset, a 5xx) the same provider is asked for the status of the reference (a few
   times); ``not_found`` proves it never received the charge, so the next provider may be tried.
   Anything else stays ``pending`` with that provider, and no other provider is ever tried for it:
   reconciliation (``services/payments/reconcile.py``) settles it from the providers' ledgers.
4. If no provider took it, nothing was charged anywhere: the payment and its key are removed and
   the answer is a 503, so a retry with the same key runs again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError

from services.common.db import Database
from services.common.errors import ApiError
from services.common.render import timestamp
from services.payments import providers
from services.payments.breaker import Breaker, weighted_order
from services.payments.providers import SETTLED, Answer
from services.payments.settings import PaymentsSettings, Provider
from services.payments.tables import idempotency_keys, payments

logger = logging.getLogger("services.payments")

PAYMENT_ID_RE = re.compile(r"pay_[0-9a-f]{24}")
WAIT_POLL_SECONDS = 0.02


class IdempotencyKeyReused(ApiError):
    status = 422
    code = "idempotency_key_reused"

    def __init__(self) -> None:
        super().__init__("This Idempotency-Key was already used with a different request body.")


class ProvidersUnavailable(ApiError):
    status = 503
    code = "providers_unavailable"

    def __init__(self) -> None:
        super().__init__(
            "No payment provider could take the payment now; nothing was charged. "
            "Retry shortly with the same Idempotency-Key.",
            headers={"Retry-After": "1"},
        )


def new_payment_id() -> str:
    return f"pay_{secrets.token_hex(12)}"


def payment_json(row: Row[Any]) -> dict[str, Any]:
    return {
        "id": row.id,
        "status": "pending" if row.status == "processing" else row.status,
        "provider": row.provider,
        "order_id": row.order_id,
        "amount": row.amount,
        "currency": row.currency,
        "attempts": json.loads(row.attempts),
        "created_at": timestamp(row.created_at),
        "settled_at": timestamp(row.settled_at) if row.settled_at is not None else None,
    }


def _attempt(provider: Provider, step: str, answer: Answer) -> dict[str, Any]:
    return {
        "provider": provider.name,
        "step": step,
        "outcome": answer.outcome,
        "ms": answer.ms,
        "detail": answer.detail,
    }


class Distributor:
    """Owns the providers' HTTP client and breakers; one per worker process (the app's lifespan)."""

    def __init__(self, db: Database, settings: PaymentsSettings, client: httpx.AsyncClient) -> None:
        self.db = db
        self.settings = settings
        self.client = client
        self.breakers = {p.name: Breaker(settings.breaker_open_seconds) for p in settings.providers}
        self.rng = random.Random()  # noqa: S311 - load spreading, not a secret
        self.charge_timeout = httpx.Timeout(
            settings.provider_timeout, connect=settings.connect_timeout, pool=settings.connect_timeout
        )
        self.status_timeout = httpx.Timeout(
            settings.status_timeout, connect=settings.connect_timeout, pool=settings.connect_timeout
        )

    def budget_seconds(self) -> float:
        """The longest one request can keep a payment ``processing``: every provider unclear, each
        followed by every status query (plus the back-off between them)."""
        per_status = self.settings.connect_timeout + self.settings.status_timeout
        retries = self.settings.status_retries
        per_provider = (
            self.settings.connect_timeout
            + self.settings.provider_timeout
            + (retries + 1) * per_status
            + 0.05 * retries * (retries + 1)
        )
        return len(self.settings.providers) * per_provider + 1.0

    # --- the API --------------------------------------------------------------------------------------

    async def pay(
        self, *, key: str, fingerprint: str, order_id: int, amount: int, currency: str
    ) -> tuple[dict[str, Any], bool]:
        """The payment for ``key`` and whether it existed already (a replayed answer)."""
        found = await self._by_key(key)
        if found is None:
            payment_id = new_payment_id()
            try:
                await self._claim(payment_id, key, fingerprint, order_id, amount, currency)
            except IntegrityError:
                found = await self._by_key(key)  # a concurrent request with the same key claimed it
                if found is None:
                    raise ProvidersUnavailable() from None  # … and found no provider, meanwhile
            else:
                return payment_json(await self._charge(payment_id, amount, currency)), False
        if found.fingerprint != fingerprint:
            raise IdempotencyKeyReused()
        row = await self._when_settled(found.payment_id)
        if row is None:
            raise ProvidersUnavailable()  # the first request found no provider; nothing was charged
        return payment_json(row), True

    async def get(self, payment_id: str) -> dict[str, Any] | None:
        row = await self._row(payment_id) if PAYMENT_ID_RE.fullmatch(payment_id) else None
        return payment_json(row) if row is not None else None

    def providers_view(self) -> list[dict[str, Any]]:
        return [
            {"name": p.name, "url": p.url, "weight": p.weight, **self.breakers[p.name].snapshot()}
            for p in self.settings.providers
        ]

    # --- charging -------------------------------------------------------------------------------------

    async def _charge(self, payment_id: str, amount: int, currency: str) -> Row[Any]:
        attempts: list[dict[str, Any]] = []
        settled: tuple[str, str] | None = None
        unclear = False
        for provider in weighted_order(self.settings.providers, self.rng):
            if not self.breakers[provider.name].acquire():
                skipped = {"step": "skipped", "outcome": "breaker_open", "ms": 0.0, "detail": "breaker open"}
                attempts.append({"provider": provider.name, **skipped})
                continue
            answer = await self._charge_at(provider, payment_id, amount, currency)
            attempts.append(_attempt(provider, "charge", answer))
            if answer.outcome in SETTLED:
                settled = (answer.outcome, provider.name)
                break
            if answer.outcome == "not_processed":
                continue  # it certainly did not charge: the next provider may
            unclear = True
            known = await self._status(provider, payment_id)
            attempts.append(_attempt(provider, "status", known))
            if known.outcome in SETTLED:
                settled = (known.outcome, provider.name)
                break
            if known.outcome == "not_found":
                continue  # it never received the charge
            logger.warning(
                "payment %s pending: %s %s, status %s", payment_id, provider.name, answer.detail, known.detail
            )
            settled = ("pending", provider.name)  # it may have charged: never try another provider
            break
        if settled is None:
            await self._forget(payment_id)
            raise ProvidersUnavailable()
        status, provider_name = settled
        now = self.db.now()
        values: dict[str, Any] = {
            "status": status,
            "provider": provider_name,
            "attempts": json.dumps(attempts),
            "updated_at": now,
        }
        if status != "pending":
            values["settled_at"] = now
            if unclear:  # a provider that lost an answer may still charge late: look again later
                values["audit_after"] = now + timedelta(seconds=self.settings.audit_seconds)
        async with self.db.write() as conn:
            await conn.execute(
                update(payments)
                .where(payments.c.id == payment_id, payments.c.status == "processing")
                .values(**values)
            )
        row = await self._row(payment_id)
        assert row is not None
        return row

    async def _charge_at(self, provider: Provider, payment_id: str, amount: int, currency: str) -> Answer:
        """One charge; its verdict goes to the provider's breaker, as a failure the moment it is slow."""
        breaker = self.breakers[provider.name]
        with self._slow_watch(breaker) as watch:
            answer = await providers.charge(
                self.client,
                provider,
                reference=payment_id,
                amount=amount,
                currency=currency,
                timeout=self.charge_timeout,
            )
            watch.append(answer.outcome in SETTLED)
        return answer

    @contextmanager
    def _slow_watch(self, breaker: Breaker) -> Iterator[list[bool]]:
        verdict: list[bool] = []
        counted = False

        def too_slow() -> None:
            nonlocal counted
            counted = True
            breaker.record(False)

        handle = asyncio.get_running_loop().call_later(self.settings.slow_ms / 1000, too_slow)
        try:
            yield verdict
        finally:
            handle.cancel()
            if not counted:
                breaker.record(bool(verdict and verdict[0]))

    async def _status(self, provider: Provider, reference: str) -> Answer:
        """The provider's status of ``reference``, asked again (with a short back-off) while it has no
        definite answer (unknown, processing)."""
        answer = await providers.status(
            self.client, provider, reference=reference, timeout=self.status_timeout
        )
        for retry in range(1, self.settings.status_retries + 1):
            if answer.outcome in (*SETTLED, "not_found"):
                break
            await asyncio.sleep(0.1 * retry)
            answer = await providers.status(
                self.client, provider, reference=reference, timeout=self.status_timeout
            )
        return answer

    # --- storage --------------------------------------------------------------------------------------

    async def _claim(
        self, payment_id: str, key: str, fingerprint: str, order_id: int, amount: int, currency: str
    ) -> None:
        now = self.db.now()
        async with self.db.write() as conn:
            await conn.execute(
                insert(payments).values(
                    id=payment_id,
                    order_id=order_id,
                    amount=amount,
                    currency=currency,
                    status="processing",
                    provider=None,
                    attempts="[]",
                    duplicates_refunded=0,
                    created_at=now,
                    updated_at=now,
                )
            )
            await conn.execute(
                insert(idempotency_keys).values(
                    key=key, fingerprint=fingerprint, payment_id=payment_id, created_at=now
                )
            )

    async def _forget(self, payment_id: str) -> None:
        """No provider charged it: remove the payment and its key, so that a retry runs again."""
        async with self.db.write() as conn:
            await conn.execute(delete(idempotency_keys).where(idempotency_keys.c.payment_id == payment_id))
            await conn.execute(
                delete(payments).where(payments.c.id == payment_id, payments.c.status == "processing")
            )

    async def _by_key(self, key: str) -> Row[Any] | None:
        async with self.db.read() as conn:
            result = await conn.execute(select(idempotency_keys).where(idempotency_keys.c.key == key))
            return result.first()

    async def _row(self, payment_id: str) -> Row[Any] | None:
        async with self.db.read() as conn:
            return (await conn.execute(select(payments).where(payments.c.id == payment_id))).first()

    async def _when_settled(self, payment_id: str) -> Row[Any] | None:
        """The payment once no request is charging it any more (bounded by the first request's own
        budget); None if it was removed (no provider took it)."""
        deadline = asyncio.get_running_loop().time() + self.budget_seconds()
        row = await self._row(payment_id)
        while row is not None and row.status == "processing" and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(WAIT_POLL_SECONDS)
            row = await self._row(payment_id)
        return row
