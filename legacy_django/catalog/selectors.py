"""The catalog documents, assembled from the item tables on every request (the catalog service serves
the same documents from its view, kept by events: ADR 0018)."""

from __future__ import annotations

from collections.abc import Sequence

from events.documents import Document, document, missing_message
from legacy_django.common.errors import NotFound
from legacy_django.items.selectors import item_snapshots


def catalog_documents(item_ids: Sequence[int]) -> list[Document]:
    """The documents of ``item_ids``, in that order; a 404 naming every id that is no item."""
    snapshots = item_snapshots(item_ids)
    missing = [item_id for item_id in item_ids if item_id not in snapshots]
    if missing:
        raise NotFound(missing_message(missing))
    return [document(snapshots[item_id].state, snapshots[item_id].updated_at) for item_id in item_ids]
