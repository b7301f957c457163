"""``python -m services.payments``: serve the payments service (uvicorn, uvloop + httptools).

``python -m services.payments reconcile``: one reconciliation round now (the service also runs one
every PAYMENTS_RECONCILE_SECONDS); prints what it did as JSON, exits 1 if a duplicate charge was found.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Mapping

import httpx

from services.common.db import Database
from services.common.serve import serve
from services.common.settings import load_settings
from services.payments.distributor import Distributor
from services.payments.reconcile import Summary, reconcile_once
from services.payments.settings import load_payments_settings
from services.payments.tables import ensure_schema


async def reconcile(env: Mapping[str, str] = os.environ) -> Summary:
    """One round with the service's settings from ``env``."""
    db = Database(load_settings("payments", env).database_url)
    try:
        await ensure_schema(db)
        async with httpx.AsyncClient() as client:
            return await reconcile_once(Distributor(db, load_payments_settings(env), client))
    finally:
        await db.dispose()


def main(argv: list[str]) -> int:
    if argv == ["reconcile"]:
        summary = asyncio.run(reconcile())
        print(json.dumps(summary.as_dict()))
        return 1 if summary.duplicates_refunded or summary.refund_failures else 0
    if argv:
        print("usage: python -m services.payments [reconcile]", file=sys.stderr)
        return 2
    serve("payments")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
