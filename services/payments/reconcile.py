"""Reconciliation: settle what stayed unknown, and make sure no reference is charged twice.

One round (``reconcile_once``; the service runs one every ``PAYMENTS_RECONCILE_SECONDS``, and
``python -m services.payments reconcile`` runs one on demand) looks at:

- every ``pending`` payment, and every ``processing`` one older than a request can take (its request
  died): it asks **every** provider for the status of the reference. Charged somewhere: approved
  (by the provider whose answer was lost, if it is among them); charged nowhere and every provider
  answered: declined (by the provider that declined it, or by none: nobody processed it); a provider
  without a definite answer: still pending, asked again next round;
- every settled payment whose ``audit_after`` has come (it had an unclear attempt, so a provider may
  have charged late): every ledger again.

A charge of the reference in any ledger beyond the one the payment is settled with (a second
provider, or any provider for a declined payment) is a **duplicate**: it is refunded, counted in
``duplicates_refunded`` and logged as an ``ALARM`` line. It should never happen (ADR 0017).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.engine import Row

from services.payments import providers
from services.payments.distributor import Distributor
from services.payments.providers import Answer
from services.payments.tables import payments

logger = logging.getLogger("services.payments.reconcile")

BATCH = 500
CONCURRENCY = 16


@dataclass
class Summary:
    checked: int = 0
    approved: int = 0
    declined: int = 0
    still_pending: int = 0
    audited: int = 0
    duplicates_refunded: int = 0
    refund_failures: int = 0
    settled_ids: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def reconcile_once(distributor: Distributor) -> Summary:
    db = distributor.db
    now = db.now()
    stale = now - timedelta(seconds=distributor.budget_seconds() * 2)
    query = (
        select(payments)
        .where(
            or_(
                payments.c.status == "pending",
                and_(payments.c.status == "processing", payments.c.updated_at < stale),
                payments.c.audit_after <= now,
            )
        )
        .order_by(payments.c.created_at)
        .limit(BATCH)
    )
    async with db.read() as conn:
        rows = (await conn.execute(query)).all()
    summary = Summary(checked=len(rows))
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(row: Row[Any]) -> None:
        async with gate:
            await _reconcile(distributor, row, summary)

    await asyncio.gather(*(one(row) for row in rows))
    return summary


async def _ledgers(distributor: Distributor, reference: str) -> dict[str, Answer]:
    names = [p.name for p in distributor.settings.providers]
    answers = await asyncio.gather(
        *(
            providers.status(distributor.client, p, reference=reference, timeout=distributor.status_timeout)
            for p in distributor.settings.providers
        )
    )
    return dict(zip(names, answers, strict=True))


async def _refund_duplicates(
    distributor: Distributor, row: Row[Any], duplicates: list[str], summary: Summary
) -> int:
    refunded = 0
    by_name = {p.name: p for p in distributor.settings.providers}
    for name in duplicates:
        answer = await providers.refund(
            distributor.client, by_name[name], reference=row.id, timeout=distributor.status_timeout
        )
        if answer.outcome == "refunded":
            refunded += 1
            logger.error(
                "ALARM duplicate charge: payment %s (order %s, %s %s) was also charged by %s; refunded",
                row.id,
                row.order_id,
                row.amount,
                row.currency,
                name,
            )
        else:
            summary.refund_failures += 1
            logger.error(
                "ALARM duplicate charge: payment %s was also charged by %s; the refund failed (%s), "
                "retrying next round",
                row.id,
                name,
                answer.detail,
            )
    summary.duplicates_refunded += refunded
    return refunded


async def _reconcile(distributor: Distributor, row: Row[Any], summary: Summary) -> None:
    ledgers = await _ledgers(distributor, row.id)
    charged = [name for name, answer in ledgers.items() if answer.outcome == "approved"]
    unknown = [name for name, answer in ledgers.items() if answer.outcome in ("unknown", "processing")]
    now = distributor.db.now()
    later = now + timedelta(seconds=distributor.settings.audit_seconds)
    if row.status in ("pending", "processing"):
        if charged:
            keep = row.provider if row.provider in charged else charged[0]
            status, provider = "approved", keep
        elif unknown:
            summary.still_pending += 1
            return
        else:
            declined_by = [name for name, answer in ledgers.items() if answer.outcome == "declined"]
            status, provider = "declined", (declined_by[0] if declined_by else None)
        refunded = await _refund_duplicates(distributor, row, [n for n in charged if n != provider], summary)
        values: dict[str, Any] = {
            "status": status,
            "provider": provider,
            "settled_at": now,
            "updated_at": now,
            # A provider that did not answer may still hold a charge (or a refund to retry): look again.
            "audit_after": later if unknown or len(charged) - 1 > refunded else None,
            "duplicates_refunded": payments.c.duplicates_refunded + refunded,
        }
        async with distributor.db.write() as conn:
            result = await conn.execute(
                update(payments)
                .where(payments.c.id == row.id, payments.c.status.in_(("pending", "processing")))
                .values(**values)
            )
        if result.rowcount:
            summary.approved += status == "approved"
            summary.declined += status == "declined"
            summary.settled_ids.append(row.id)
            logger.info("payment %s settled %s (%s) by reconciliation", row.id, status, provider or "-")
        return
    # An audit of a settled payment: only the charge it was settled with may exist.
    keep = row.provider if row.status == "approved" else None
    extra = [name for name in charged if name != keep]
    refunded = await _refund_duplicates(distributor, row, extra, summary)
    summary.audited += 1
    done = not unknown and refunded == len(extra)
    async with distributor.db.write() as conn:
        await conn.execute(
            update(payments)
            .where(payments.c.id == row.id)
            .values(
                audit_after=None if done else later,
                duplicates_refunded=payments.c.duplicates_refunded + refunded,
                updated_at=now,
            )
        )


async def reconcile_forever(distributor: Distributor, interval: float) -> None:
    """The background task of the service: a round every ``interval`` seconds; errors are logged."""
    while True:
        await asyncio.sleep(interval)
        try:
            summary = await reconcile_once(distributor)
        except Exception:
            logger.exception("reconciliation round failed; next round in %g s", interval)
            continue
        if summary.checked:
            logger.info(
                "reconciliation: %s", {k: v for k, v in summary.as_dict().items() if k != "settled_ids"}
            )
