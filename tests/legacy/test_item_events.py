"""The monolith's outbox (ADR 0018): every write that changes the catalog appends its event in the same
transaction, numbered per item, carrying the item as the write left it; a write that fails appends
nothing. (Both backends' events for the review routes are compared in tests/contract.)"""

from __future__ import annotations

import io
import json

from django.core.management import call_command

from events import payloads
from legacy_django.catalog.selectors import catalog_documents
from legacy_django.items.models import Item, ItemOption, OutboxEvent
from tests.legacy.conftest import Api

ORDERS = "/api/v1/orders"


def _events_after(last_id: int) -> list[OutboxEvent]:
    return list(OutboxEvent.objects.filter(pk__gt=last_id).order_by("id"))


def _last_id() -> int:
    last = OutboxEvent.objects.order_by("-id").first()
    return last.pk if last else 0


def test_an_order_of_two_items_appends_one_stock_event_per_item(api: Api) -> None:
    first, second = (Item.objects.get(pk=pk) for pk in (5, 6))
    options = [ItemOption.objects.filter(item=item).order_by("id").first() for item in (first, second)]
    mark = _last_id()
    lines = [{"option_id": option.pk, "quantity": 1} for option in options if option is not None]
    assert api.post(ORDERS, {"lines": lines}, user="demo1").status_code == 201
    events = _events_after(mark)
    assert [(event.type, event.key, event.version) for event in events] == [
        (payloads.STOCK_CHANGED, 5, first.event_version + 1),
        (payloads.STOCK_CHANGED, 6, second.event_version + 1),
    ]
    for event in events:
        item = json.loads(event.payload)["item"]
        fresh = Item.objects.get(pk=event.key)
        assert sum(option["stock"] for option in item["options"]) == fresh.stock
        assert fresh.event_version == event.version and fresh.changed_at == event.occurred_at
        assert catalog_documents([event.key])[0]["updated_at"] == fresh.changed_at.strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )


def test_a_sold_out_order_appends_nothing(api: Api) -> None:
    option = ItemOption.objects.filter(stock__gte=1, stock__lt=20).order_by("id").first()
    assert option is not None
    mark = _last_id()
    response = api.post(
        ORDERS, {"lines": [{"option_id": option.pk, "quantity": option.stock + 1}]}, user="demo1"
    )
    assert response.status_code == 409
    assert _events_after(mark) == []


def test_a_new_item_starts_its_stream_with_item_created() -> None:
    mark = _last_id()
    out = io.StringIO()
    call_command("timedeal", "create", "--options", "2", "--stock-per-option", "7", "--json", stdout=out)
    (event,) = _events_after(mark)
    created = json.loads(out.getvalue())
    assert (event.type, event.key, event.version) == (payloads.ITEM_CREATED, created["item_id"], 1)
    item = json.loads(event.payload)["item"]
    assert [option["stock"] for option in item["options"]] == [7, 7]
    assert item["review_count"] == 0 and item["distribution"] == {str(n): 0 for n in range(1, 6)}


def test_review_writes_append_their_events_with_the_figures_after_them(api: Api) -> None:
    mark = _last_id()
    created = api.post("/api/v1/reviews", {"item_id": 3, "rating": 5, "body": "event"}, user="demo5")
    assert created.status_code == 201
    review_id = created.json()["id"]
    assert api.request("PUT", f"/api/v1/reviews/{review_id}/helpful", user="demo4").status_code == 200
    assert api.request("PUT", f"/api/v1/reviews/{review_id}/helpful", user="demo4").status_code == 200
    assert api.request("DELETE", f"/api/v1/reviews/{review_id}", user="demo5").status_code == 204
    events = _events_after(mark)
    assert [event.type for event in events] == [
        payloads.REVIEW_CREATED,
        payloads.REVIEW_HELPFUL,
        payloads.REVIEW_DELETED,
    ]
    figures = [json.loads(event.payload)["item"]["review_count"] for event in events]
    assert figures[0] == figures[1] == figures[2] + 1
    assert [event.version for event in events] == [events[0].version + n for n in range(3)]
