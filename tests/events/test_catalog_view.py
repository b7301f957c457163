"""The catalog view without a broker: applying events is idempotent by version, a rebuild and the
stream meet without a gap or a double count, and the embedded relay drains the outbox into the view."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select

from events import catalog, relay
from events.db import Database
from events.schema import catalog_items
from events.settings import load_settings
from events.stream import Event
from tests.events.conftest import events_env, mismatches, pending, process, rebuild, run
from tests.events.writes import write
from tests.support.waiting import eventually


async def _outbox(db: Database) -> list[Event]:
    return await relay.fetch(db, 100_000)


async def _view(db: Database) -> dict[int, tuple[int, str]]:
    async with db.read() as conn:
        rows = await conn.execute(
            select(catalog_items.c.item_id, catalog_items.c.version, catalog_items.c.document)
        )
        return {item_id: (version, document) for item_id, version, document in rows}


def test_old_duplicate_and_reordered_events_change_nothing(databases: dict[str, str]) -> None:
    url = databases["apply"]
    rebuild(url)
    write(url, orders=40, reviews=20)
    events = run(_outbox, url)
    assert isinstance(events, list) and len(events) == 60

    async def apply_in_order_then_again_backwards(db: Database) -> dict[int, tuple[int, str]]:
        await catalog.apply(db, events)
        once = await _view(db)
        await catalog.apply(db, events)  # every event delivered twice
        for event in reversed(events):  # and once more, newest first, one at a time
            await catalog.apply(db, [event])
        assert await _view(db) == once
        return once

    view = run(apply_in_order_then_again_backwards, url)
    assert isinstance(view, dict)
    assert mismatches(url) == []
    newest = {event.key: event.version for event in events}
    assert all(view[key][0] == version for key, version in newest.items())


def test_rebuild_while_events_flow_has_no_gap_and_no_double_count(databases: dict[str, str]) -> None:
    """Events before the snapshot are applied late (after the rebuild) and change nothing; events after
    it still apply: the view ends equal to the source."""
    url = databases["rebuild"]
    write(url, orders=20, reviews=10, seed=2)
    before = run(_outbox, url)
    rebuild(url)  # the snapshot already holds everything "before" says
    write(url, orders=20, reviews=10, seed=3)
    after = [event for event in run(_outbox, url) if event.row_id > before[-1].row_id]  # type: ignore[index, union-attr]

    async def apply(db: Database) -> None:
        await catalog.apply(db, after)
        await catalog.apply(db, before)  # late, redelivered after the newer ones: no effect

    run(apply, url)
    assert mismatches(url) == []


def test_the_checker_finds_a_view_that_disagrees(databases: dict[str, str]) -> None:
    url = databases["apply"]

    async def corrupt(db: Database) -> None:
        async with db.write() as conn:
            row = (await conn.execute(select(catalog_items).where(catalog_items.c.item_id == 3))).one()
            document = json.loads(row.document) | {"review_count": 999}
            await conn.execute(
                catalog_items.update()
                .where(catalog_items.c.item_id == 3)
                .values(document=catalog.dumps(document))
            )

    run(corrupt, url)
    (problem,) = mismatches(url)
    assert problem.item_id == 3 and "review_count" in str(problem)


def test_embedded_relay_applies_the_outbox_itself(databases: dict[str, str], tmp_path: Path) -> None:
    url = databases["embedded"]
    rebuild(url)
    env = events_env(url, None)
    assert load_settings(env).embedded
    log = tmp_path / "relay.log"
    with process(["relay"], env, log):
        write(url, orders=30, reviews=15, seed=4)
        assert eventually(lambda: pending(url) == 0, timeout=20), log.read_text()
    assert "embedded mode" in log.read_text()
    assert mismatches(url) == []
