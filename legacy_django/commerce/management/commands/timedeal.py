"""``python -m legacy_django timedeal create --options 4 --stock-per-option 50 [--opens-in 0s] --json``."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from legacy_django.commerce.services import timedeal_create
from legacy_django.common.responses import timestamp
from legacy_django.items.models import Brand, Category

_DURATION = re.compile(r"(\d{1,9})(s|m|h|d)")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(raw: str) -> timedelta:
    """``0s``, ``90s``, ``5m``, ``2h``, ``1d``."""
    match = _DURATION.fullmatch(raw)
    if match is None:
        raise ValueError(f"not a duration: {raw!r} (use 30s, 5m, 2h, 1d)")
    return timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def _bounded(low: int, high: int) -> Any:
    def parse(raw: str) -> int:
        value = int(raw)
        if not low <= value <= high:
            raise ValueError(f"must be from {low} to {high}")
        return value

    parse.__name__ = f"integer from {low} to {high}"
    return parse


class Command(BaseCommand):
    help = (
        "Create a time deal: a new item whose options go on sale at a given time, each with its own "
        "stock. Examples:\n"
        "  timedeal create --options 4 --stock-per-option 50 --json       open now; prints "
        '{"item_id", "option_ids", ...}\n'
        "  timedeal create --opens-in 10m --closes-in 1h                  opens in 10 minutes for an hour"
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["create"])
        parser.add_argument("--options", type=_bounded(1, 50), default=4)
        parser.add_argument("--stock-per-option", type=_bounded(0, 1_000_000), default=50)
        parser.add_argument("--opens-in", type=duration, default=timedelta(0), help="default 0s: open now")
        parser.add_argument("--closes-in", type=duration, default=None, help="default: never closes")
        parser.add_argument("--name", default="타임딜 Time Deal")
        parser.add_argument("--price", type=_bounded(0, 100_000_000), default=39000)
        parser.add_argument("--discount-rate", type=_bounded(0, 90), default=50)
        parser.add_argument("--category", help="category slug (default: the first category)")
        parser.add_argument("--json", action="store_true", help="print the deal as one JSON object")

    def handle(self, *args: Any, **options: Any) -> None:
        categories = Category.objects.order_by("id")
        category = (
            categories.filter(slug=options["category"]).first() if options["category"] else categories.first()
        )
        brand = Brand.objects.order_by("id").first()
        if category is None or brand is None:
            raise CommandError("no such category, or no brands: seed the database first")
        if options["closes_in"] is not None and options["closes_in"] <= options["opens_in"]:
            raise CommandError("--closes-in must be later than --opens-in")
        now = timezone.now()
        deal = timedeal_create(
            options=options["options"],
            stock_per_option=options["stock_per_option"],
            opens_at=now + options["opens_in"],
            closes_at=now + options["closes_in"] if options["closes_in"] is not None else None,
            name=options["name"],
            price=options["price"],
            discount_rate=options["discount_rate"],
            brand_id=brand.pk,
            category_id=category.pk,
        )
        option_ids = sorted(deal.options.values_list("option_id", flat=True))
        result = {
            "deal_id": deal.pk,
            "item_id": deal.item_id,
            "option_ids": option_ids,
            "stock_per_option": options["stock_per_option"],
            "opens_at": timestamp(deal.opens_at),
            "closes_at": timestamp(deal.closes_at) if deal.closes_at else None,
        }
        if options["json"]:
            self.stdout.write(json.dumps(result))
        else:
            self.stdout.write(
                f"time deal {deal.pk}: item {deal.item_id}, options {option_ids}, "
                f"{options['stock_per_option']} each, opens at {result['opens_at']}"
            )
