"""The services' cheaper renderings (ADR 0021) write exactly what the monolith's formulas write."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal

from hypothesis import given
from hypothesis import strategies as st

from services.common.render import average, dumps, timestamp


def monolith_average(total: int, count: int) -> float | None:
    """legacy_django/common/responses.py: average."""
    if count == 0:
        return None
    return float((Decimal(total) / Decimal(count)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def monolith_timestamp(value: datetime) -> str:
    """legacy_django/common/responses.py: timestamp (a naive value is UTC: the service's SQLite rows)."""
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@given(st.integers(min_value=0, max_value=10**12), st.integers(min_value=0, max_value=10**9))
def test_average_is_the_monoliths_half_up_mean(total, count):
    assert average(total, count) == monolith_average(total, count)


@given(st.integers(min_value=1, max_value=2000))
def test_average_of_every_rating_total_of_a_small_count(count):
    for total in range(count, 5 * count + 1):
        assert average(total, count) == monolith_average(total, count)


def test_average_of_a_negative_total_rounds_like_the_monolith():
    assert [average(total, 8) for total in range(-20, 0)] == [monolith_average(t, 8) for t in range(-20, 0)]


@given(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    st.one_of(st.none(), st.integers(min_value=-23 * 60, max_value=23 * 60)),
)
def test_timestamp_is_the_monoliths_strftime(value, offset_minutes):
    if offset_minutes is not None:
        value = value.replace(tzinfo=timezone(timedelta(minutes=offset_minutes)))
    assert timestamp(value) == monolith_timestamp(value)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
        lambda children: st.lists(children) | st.dictionaries(st.text(), children),
        max_leaves=30,
    )
)
def test_dumps_writes_the_monoliths_bytes(data):
    assert dumps(data) == json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
