"""The payments service's own tables in the shared database, and the schema step that creates them.

The monolith's migrations own the monolith's tables; these two belong to the payments service and
nothing else reads or writes them (ADR 0017). ``ensure_schema`` runs at every start-up: ``CREATE
TABLE IF NOT EXISTS`` and ``CREATE INDEX IF NOT EXISTS``, under PostgreSQL's advisory lock (several
workers or replicas starting together) or SQLite's write lock, so it is idempotent and safe to race.
A later change to these tables needs a migration step of its own (none so far).

Payment ``status``: ``processing`` while one request is charging it, ``pending`` when no provider's
answer could be learned (reconciliation settles it), ``approved`` or ``declined``. The API shows
``processing`` as ``pending``. ``attempts`` is the JSON list of what each provider answered.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.schema import CreateIndex, CreateTable

from services.common.db import Database

metadata = MetaData()

payments = Table(
    "payments_payment",
    metadata,
    # pay_<24 hex>: also the merchant reference every provider is sent for this payment.
    Column("id", String(40), primary_key=True),
    Column("order_id", BigInteger, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("status", String(16), nullable=False),
    # The provider that approved or declined it (or, while pending, the one whose answer was lost).
    Column("provider", String(50), nullable=True),
    Column("attempts", Text, nullable=False),
    # Set when an attempt's outcome was unclear: every ledger is checked again after this moment.
    Column("audit_after", DateTime(timezone=True), nullable=True),
    # Charges of this payment found in a second ledger and refunded (each one an alarm).
    Column("duplicates_refunded", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("settled_at", DateTime(timezone=True), nullable=True),
    Index("payments_payment_status", "status"),
    Index("payments_payment_audit_after", "audit_after"),
)

idempotency_keys = Table(
    "payments_idempotency",
    metadata,
    Column("key", String(255), primary_key=True),
    # SHA-256 of the request body the key was first used with.
    Column("fingerprint", String(64), nullable=False),
    Column("payment_id", String(40), ForeignKey("payments_payment.id"), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

_SCHEMA_LOCK = 0x5041_594D  # "PAYM": the advisory lock key of the schema step on PostgreSQL


async def ensure_schema(db: Database) -> None:
    """Create the tables and indexes that do not exist yet; leave existing ones alone."""
    async with db.write() as conn:
        if not db.is_sqlite:
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK})
        for table in metadata.sorted_tables:
            await conn.execute(CreateTable(table, if_not_exists=True))
            for index in sorted(table.indexes, key=lambda index: str(index.name)):
                await conn.execute(CreateIndex(index, if_not_exists=True))
