"""Reads and writes of reviews over the shared tables; same rules and orders as the monolith.

Each write appends the same event to the outbox as the monolith's, in its transaction, last, after the
item's row is updated (``events.outbox``, ADR 0018)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, bindparam, case, exists, func, literal_column, select, true, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import BindParameter

from events import outbox, payloads
from services.common.db import Database, Query
from services.common.errors import INVALID_CREDENTIALS, Conflict, Forbidden, NotFound, Unauthenticated
from services.common.params import PageRequest
from services.common.render import average, timestamp
from shopdb.tables import helpful_votes, items, reviews, users

SORTS = ("recent", "rating")
_ORDERING = {
    "recent": (reviews.c.created_at.desc(), reviews.c.id.desc()),
    "rating": (reviews.c.rating.desc(), reviews.c.created_at.desc(), reviews.c.id.desc()),
}
# review_json reads a row by position: these columns first, then helpful_by_me for a signed-in viewer.
_REVIEW_COLUMNS = (
    reviews.c.id,
    reviews.c.item_id,
    reviews.c.user_id,
    users.c.display_name,
    reviews.c.rating,
    reviews.c.body,
    reviews.c.helpful_count,
    reviews.c.created_at,
)
_REVIEW_FROM = reviews.join(users, users.c.id == reviews.c.user_id)


def _select_reviews(viewer: Any) -> Select[Any]:
    """Review rows with the author's name and, for a signed-in ``viewer`` (a value or a bind
    parameter; None for anonymous), a ``helpful_by_me`` column."""
    columns: list[Any] = list(_REVIEW_COLUMNS)
    if viewer is not None:
        voted = exists().where(helpful_votes.c.review_id == reviews.c.id, helpful_votes.c.user_id == viewer)
        columns.append(voted.label("helpful_by_me"))
    return select(*columns).select_from(_REVIEW_FROM)


def review_json(row: Sequence[Any], signed_in: bool) -> dict[str, Any]:
    """A row of ``_select_reviews``; ``helpful_by_me`` only for a signed-in viewer (the row then has that
    column)."""
    data: dict[str, Any] = {
        "id": row[0],
        "item_id": row[1],
        "author": {"id": row[2], "display_name": row[3]},
        "rating": row[4],
        "body": row[5],
        "helpful_count": row[6],
        "created_at": timestamp(row[7]),
    }
    if signed_in:
        data["helpful_by_me"] = bool(row[8])
    return data


async def _page(
    conn: AsyncConnection, where: Any, page: PageRequest, sort: str, viewer_id: int | None
) -> list[dict[str, Any]]:
    query = (
        _select_reviews(viewer_id)
        .where(where)
        .order_by(*_ORDERING[sort])
        .limit(page.size)
        .offset(page.offset)
    )
    return [review_json(row, viewer_id is not None) for row in await conn.execute(query)]


def _count(where: Any) -> Any:
    return select(func.count()).select_from(reviews).where(where).scalar_subquery()


def _item_exists(item_id: int) -> Any:
    return exists().where(items.c.id == item_id)


def _item_page_query(sort: str, signed_in: bool) -> Query:
    """One round trip for reviews.list: the item's row (none: 404), left-joined with the page of its
    reviews (no review on the page: one row of NULLs), and the item's review count as the last column."""
    item_id: BindParameter[int] = bindparam("item_id")
    page = (
        _select_reviews(bindparam("viewer_id") if signed_in else None)
        .where(reviews.c.item_id == item_id)
        .order_by(*_ORDERING[sort])
        .limit(bindparam("size"))
        .offset(bindparam("offset"))
        .subquery("page")
    )
    ordering = {
        "recent": (page.c.created_at.desc(), page.c.id.desc()),
        "rating": (page.c.rating.desc(), page.c.created_at.desc(), page.c.id.desc()),
    }[sort]
    total = select(func.count()).select_from(reviews).where(reviews.c.item_id == item_id).scalar_subquery()
    return Query(
        select(*page.c, total.label("total"))
        .select_from(items.outerjoin(page, true()))
        .where(items.c.id == item_id)
        .order_by(*ordering)
    )


_ITEM_PAGE = {
    (sort, signed_in): _item_page_query(sort, signed_in) for sort in SORTS for signed_in in (False, True)
}


async def review_list_for_item(
    db: Database, item_id: int, page: PageRequest, sort: str, viewer_id: int | None
) -> tuple[list[dict[str, Any]], int]:
    signed_in = viewer_id is not None
    params = {"item_id": item_id, "size": page.size, "offset": page.offset, "viewer_id": viewer_id}
    rows = await db.fetch(_ITEM_PAGE[sort, signed_in], params)
    if not rows:
        raise NotFound(f"Item {item_id} does not exist.")
    total: int = rows[0][-1]
    if rows[0][0] is None:  # the item has no review on this page
        return [], total
    return [review_json(row, signed_in) for row in rows], total


async def review_list_for_user(
    db: Database, user_id: int, page: PageRequest
) -> tuple[list[dict[str, Any]], int]:
    where = reviews.c.user_id == user_id
    async with db.read() as conn:
        total = (await conn.execute(select(_count(where)))).scalar_one()
        return await _page(conn, where, page, "recent", user_id), total


async def _review_row(conn: AsyncConnection, review_id: int, viewer_id: int | None = None) -> Row[Any]:
    row = (await conn.execute(_select_reviews(viewer_id).where(reviews.c.id == review_id))).first()
    if row is None:
        raise NotFound(f"Review {review_id} does not exist.")
    return row


async def review_detail(db: Database, review_id: int, viewer_id: int | None) -> dict[str, Any]:
    async with db.read() as conn:
        return review_json(await _review_row(conn, review_id, viewer_id), viewer_id is not None)


def _rated(rating: int) -> Any:
    """How many of the item's reviews have ``rating`` (constants as SQL literals, not parameters)."""
    return func.count(case((reviews.c.rating == literal_column(str(rating)), literal_column("1"))))


# One round trip for reviews.summary: no row when the item does not exist; else the review count, the
# rating total and the count per rating 1..5 (LEFT JOIN: zeros for an item without reviews).
_SUMMARY = Query(
    select(
        func.count(reviews.c.id),
        func.coalesce(func.sum(reviews.c.rating), literal_column("0")),
        *(_rated(rating) for rating in range(1, 6)),
    )
    .select_from(items.outerjoin(reviews, reviews.c.item_id == items.c.id))
    .where(items.c.id == bindparam("item_id"))
    .group_by(items.c.id)
)


async def review_summary(db: Database, item_id: int) -> dict[str, Any]:
    rows = await db.fetch(_SUMMARY, {"item_id": item_id})
    if not rows:
        raise NotFound(f"Item {item_id} does not exist.")
    count, total, *per_rating = rows[0]
    return {
        "item_id": item_id,
        "review_count": count,
        "rating_average": average(total, count),
        "distribution": {str(rating): n for rating, n in enumerate(per_rating, start=1)},
    }


async def require_active_user(db: Database, user_id: int) -> None:
    """Writes need a user that exists and is active, as in the monolith (else 401)."""
    async with db.read() as conn:
        query = select(users.c.id).where(users.c.id == user_id, users.c.is_active.is_(True))
        if (await conn.execute(query)).first() is None:
            raise Unauthenticated(INVALID_CREDENTIALS)


async def item_exists(db: Database, item_id: int) -> bool:
    async with db.read() as conn:
        return bool((await conn.execute(select(_item_exists(item_id)))).scalar())


async def _review_event(
    db: Database, conn: AsyncConnection, event_type: str, item_id: int, review_id: int, rating: int
) -> None:
    """``review.created`` / ``review.deleted`` with the item as this transaction leaves it."""

    def build(state: payloads.ItemState) -> payloads.Payload:
        return payloads.review_changed(state, review_id=review_id, rating=rating)

    await outbox.append(conn, item_id=item_id, event_type=event_type, build=build, now=db.now())


def _duplicate(item_id: int) -> Conflict:
    return Conflict(f"You have already reviewed item {item_id}.")


async def review_create(db: Database, user_id: int, item_id: int, rating: int, body: str) -> dict[str, Any]:
    try:
        async with db.write() as conn:
            duplicate = select(exists().where(reviews.c.user_id == user_id, reviews.c.item_id == item_id))
            if (await conn.execute(duplicate)).scalar():
                raise _duplicate(item_id)
            inserted = await conn.execute(
                reviews.insert()
                .values(
                    user_id=user_id,
                    item_id=item_id,
                    rating=rating,
                    body=body,
                    helpful_count=0,
                    created_at=db.now(),
                )
                .returning(reviews.c.id)
            )
            review_id = inserted.scalar_one()
            await conn.execute(
                update(items)
                .where(items.c.id == item_id)
                .values(review_count=items.c.review_count + 1, rating_total=items.c.rating_total + rating)
            )
            await _review_event(db, conn, payloads.REVIEW_CREATED, item_id, review_id, rating)
    except IntegrityError:
        raise _duplicate(item_id) from None
    async with db.read() as conn:
        return review_json(await _review_row(conn, review_id, user_id), signed_in=True)


async def review_vote_helpful(db: Database, user_id: int, review_id: int) -> dict[str, Any]:
    async with db.read() as conn:
        review = await _review_row(conn, review_id)
    if review.user_id == user_id:
        raise Forbidden("You cannot vote for your own review.")
    async with db.write() as conn:
        vote = db.insert_ignoring_conflicts(helpful_votes).values(
            review_id=review_id, user_id=user_id, created_at=db.now()
        )
        if (await conn.execute(vote)).rowcount == 1:
            counted = await conn.execute(
                update(reviews)
                .where(reviews.c.id == review_id)
                .values(helpful_count=reviews.c.helpful_count + 1)
                .returning(reviews.c.helpful_count)
            )
            helpful_count = counted.scalar_one()

            def build(state: payloads.ItemState) -> payloads.Payload:
                return payloads.review_helpful(state, review_id=review_id, helpful_count=helpful_count)

            await outbox.append(
                conn, item_id=review.item_id, event_type=payloads.REVIEW_HELPFUL, build=build, now=db.now()
            )
    async with db.read() as conn:
        review = await _review_row(conn, review_id)
    return {"review_id": review.id, "helpful_count": review.helpful_count, "helpful_by_me": True}


async def review_delete(db: Database, user_id: int, review_id: int) -> None:
    async with db.read() as conn:
        review = await _review_row(conn, review_id)
    if review.user_id != user_id:
        raise Forbidden("You can only delete your own reviews.")
    async with db.write() as conn:
        # Votes first: their foreign key points at the review (the monolith's ORM cascades the same way).
        await conn.execute(helpful_votes.delete().where(helpful_votes.c.review_id == review_id))
        deleted = await conn.execute(reviews.delete().where(reviews.c.id == review_id))
        if deleted.rowcount:
            await conn.execute(
                update(items)
                .where(items.c.id == review.item_id)
                .values(
                    review_count=items.c.review_count - 1, rating_total=items.c.rating_total - review.rating
                )
            )
            await _review_event(db, conn, payloads.REVIEW_DELETED, review.item_id, review_id, review.rating)
