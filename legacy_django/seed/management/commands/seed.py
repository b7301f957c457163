"""``python -m legacy_django seed --scale small|large [--reset]``: load the deterministic demo data."""

from __future__ import annotations

import random
import time
from collections import Counter
from typing import Any

from django.contrib.auth.hashers import make_password
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser
from django.core.management.color import no_style
from django.db import connection, transaction

from legacy_django.activation.models import ViewHistory
from legacy_django.commerce.models import Order, OrderLine, TimeDeal, TimeDealOption
from legacy_django.items.models import Brand, Category, Item, ItemOption
from legacy_django.reviews.models import HelpfulVote, Review
from legacy_django.seed import data
from legacy_django.users.models import User

BATCH = 2000


class Command(BaseCommand):
    help = (
        "Load deterministic demo data (the same rows every time). Examples:\n"
        "  seed --scale small      ~100 users, 40 items, ~500 reviews, one open time deal (tests)\n"
        "  seed --scale large      ~2000 users, 500 items, ~20k reviews, one open time deal (make run)\n"
        "  seed --scale large --reset   wipe the database first"
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--scale", choices=sorted(data.SCALES), default="small")
        parser.add_argument("--reset", action="store_true", help="flush every table first")

    def handle(self, *args: Any, scale: str, reset: bool, **options: Any) -> None:
        if reset:
            call_command("flush", interactive=False, verbosity=0)
        elif User.objects.exists():
            self.stdout.write("database already has data; leaving it alone (use --reset to reseed)")
            return
        started = time.monotonic()
        counts = seed(data.SCALES[scale])
        summary = ", ".join(f"{name} {count}" for name, count in counts.items())
        self.stdout.write(f"seeded ({scale}) in {time.monotonic() - started:.1f}s: {summary}")


def _users(scale: data.Scale, password_hash: str) -> list[User]:
    names = data.DEMO_USERS + [(f"user{n:05d}", f"Shopper {n}") for n in range(1, scale.bulk_users + 1)]
    return [
        User(
            id=index,
            username=username,
            display_name=display,
            password=password_hash,
            date_joined=data.at(86400 * 365 - index * 60),
        )
        for index, (username, display) in enumerate(names, start=1)
    ]


def _catalogue(
    rng: random.Random, scale: data.Scale
) -> tuple[list[Category], list[Brand], list[Item], list[ItemOption]]:
    categories = [
        Category(id=i, slug=slug, name=name) for i, (slug, name) in enumerate(data.CATEGORIES, start=1)
    ]
    brand_names = [f"{stem} {tail}" for stem in data.BRAND_STEMS for tail in data.BRAND_TAILS]
    brands = [Brand(id=i, name=name) for i, name in enumerate(brand_names, start=1)]
    items, options = [], []
    for item_id in range(1, scale.items + 1):
        category = categories[(item_id - 1) % len(categories)]
        noun = rng.choice(data.NOUNS[category.slug])
        items.append(
            Item(
                id=item_id,
                name=f"{rng.choice(data.ADJECTIVES)} {noun} {item_id}",
                brand_id=rng.randint(1, len(brands)),
                category_id=category.pk,
                price=rng.choice(data.PRICES),
                discount_rate=rng.choice(data.DISCOUNTS),
                created_at=data.at(86400 * 200 - item_id * 600),
            )
        )
        sold_out = rng.random() < 0.08
        for name in rng.sample(data.OPTION_NAMES, rng.randint(1, 6)):
            stock = 0 if sold_out else rng.choice([0, 3, 10, 25, 50])
            options.append(ItemOption(id=len(options) + 1, item_id=item_id, name=name, stock=stock))
    return categories, brands, items, options


def _reviews(rng: random.Random, scale: data.Scale, users: list[User], items: list[Item]) -> list[Review]:
    reviews: list[Review] = []
    user_ids = [user.pk for user in users]
    for item in items:
        count = min(len(user_ids), rng.randint(0, 2 * scale.reviews_per_item))
        for user_id in rng.sample(user_ids, count):
            reviews.append(
                Review(
                    id=len(reviews) + 1,
                    user_id=user_id,
                    item_id=item.pk,
                    rating=rng.choices(range(1, 6), weights=data.RATING_WEIGHTS)[0],
                    body=data.review_body(rng),
                    created_at=data.at(rng.randint(0, 86400 * 180)),
                )
            )
    return reviews


def _helpful_votes(rng: random.Random, users: list[User], reviews: list[Review]) -> list[HelpfulVote]:
    votes: list[HelpfulVote] = []
    user_ids = [user.pk for user in users]
    for review in reviews:
        if rng.random() < 0.3:
            voters = [uid for uid in rng.sample(user_ids, rng.randint(1, 5)) if uid != review.user_id]
            for voter in voters:
                votes.append(
                    HelpfulVote(
                        id=len(votes) + 1, review_id=review.pk, user_id=voter, created_at=data.BASE_TIME
                    )
                )
            review.helpful_count = len(voters)
    return votes


def _views(rng: random.Random, scale: data.Scale, users: list[User], items: list[Item]) -> list[ViewHistory]:
    views: list[ViewHistory] = []
    for user in users:
        # Each user browses a couple of favourite categories, so recommendations have something to learn.
        favourite_categories = set(rng.sample(range(1, len(data.CATEGORIES) + 1), 2))
        favourites = [item for item in items if item.category_id in favourite_categories]
        for _ in range(rng.randint(scale.views_per_user // 2, scale.views_per_user)):
            pool = favourites if favourites and rng.random() < 0.8 else items
            item = rng.choice(pool)
            views.append(
                ViewHistory(
                    id=len(views) + 1,
                    user_id=user.pk,
                    item_id=item.pk,
                    viewed_at=data.at(rng.randint(0, 86400 * 30)),
                )
            )
    return views


def _orders(
    rng: random.Random, users: list[User], items: list[Item], options: list[ItemOption]
) -> tuple[list[Order], list[OrderLine]]:
    price = {item.pk: item.price - item.price * item.discount_rate // 100 for item in items}
    orders, lines = [], []
    for user in users[:5]:
        for _ in range(3):
            option = rng.choice(options)
            quantity = rng.randint(1, 3)
            order = Order(
                id=len(orders) + 1,
                user_id=user.pk,
                total=price[option.item_id] * quantity,
                created_at=data.at(rng.randint(0, 86400 * 60)),
            )
            orders.append(order)
            lines.append(
                OrderLine(
                    id=len(lines) + 1,
                    order_id=order.pk,
                    option_id=option.pk,
                    quantity=quantity,
                    unit_price=price[option.item_id],
                )
            )
    return orders, lines


def _time_deal(
    categories: list[Category], items: list[Item], options: list[ItemOption]
) -> tuple[Item, list[ItemOption], TimeDeal, list[TimeDealOption]]:
    """The open time deal: an item of its own after the catalogue, options after the others."""
    category = next(category for category in categories if category.slug == data.TIME_DEAL_CATEGORY)
    item = Item(
        id=len(items) + 1,
        name=data.TIME_DEAL_NAME,
        brand_id=1,
        category_id=category.pk,
        price=data.TIME_DEAL_PRICE,
        discount_rate=data.TIME_DEAL_DISCOUNT,
        created_at=data.at(7200),
    )
    deal_options = [
        ItemOption(id=len(options) + n, item_id=item.pk, name=name, stock=data.TIME_DEAL_STOCK)
        for n, name in enumerate(data.TIME_DEAL_OPTIONS, start=1)
    ]
    deal = TimeDeal(id=1, item_id=item.pk, opens_at=data.at(3600), closes_at=None, created_at=data.at(7200))
    entries = [
        TimeDealOption(id=n, deal_id=deal.pk, option_id=option.pk, initial_stock=option.stock)
        for n, option in enumerate(deal_options, start=1)
    ]
    return item, deal_options, deal, entries


Rows = list[tuple[type, list[Any]]]


def build(scale: data.Scale) -> Rows:
    """Every seeded row, in insert order; pure and deterministic."""
    rng = random.Random(data.SEED)
    # One hash for every seeded user: hashing 2000 passwords would take minutes and prove nothing.
    password_hash = make_password(data.DEMO_PASSWORD, salt="seeddemosaltv1")
    users = _users(scale, password_hash)
    categories, brands, items, options = _catalogue(rng, scale)
    reviews = _reviews(rng, scale, users, items)
    votes = _helpful_votes(rng, users, reviews)
    views = _views(rng, scale, users, items)
    orders, lines = _orders(rng, users, items, options)
    deal_item, deal_options, deal, deal_entries = _time_deal(categories, items, options)
    items.append(deal_item)
    options.extend(deal_options)
    stock: Counter[int] = Counter()
    for option in options:
        stock[option.item_id] += option.stock
    review_count: Counter[int] = Counter(review.item_id for review in reviews)
    rating_total: Counter[int] = Counter()
    for review in reviews:
        rating_total[review.item_id] += review.rating
    for item in items:
        item.review_count, item.rating_total = review_count[item.pk], rating_total[item.pk]
        item.stock = stock[item.pk]  # always the sum of the item's options' stock
    return [
        (User, users),
        (Category, categories),
        (Brand, brands),
        (Item, items),
        (ItemOption, options),
        (Review, reviews),
        (HelpfulVote, votes),
        (ViewHistory, views),
        (Order, orders),
        (OrderLine, lines),
        (TimeDeal, [deal]),
        (TimeDealOption, deal_entries),
    ]


def seed(scale: data.Scale) -> dict[str, int]:
    rows = build(scale)
    with transaction.atomic():
        for model, objects in rows:
            model.objects.bulk_create(objects, batch_size=BATCH)
        # Ids were given explicitly; move PostgreSQL's sequences past them (a no-op on SQLite).
        with connection.cursor() as cursor:
            for statement in connection.ops.sequence_reset_sql(no_style(), [model for model, _ in rows]):
                cursor.execute(statement)
    return {model.__name__: len(objects) for model, objects in rows}
