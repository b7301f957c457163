"""An event as it travels: read from the outbox, sent to the broker as JSON, handed to a consumer.

Partitions: an item's events all go to partition ``crc32(str(key)) % partitions`` (one queue per
partition and consumer group, one active consumer per queue: Kafka's partitions and consumer
groups, ADR 0018), so each item's events are consumed in the order they were written.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any


class MalformedEvent(ValueError):
    """A message that is not an event of ours (never retried: it would fail again)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Event:
    event_id: str
    type: str
    key: int
    version: int
    occurred_at: datetime
    payload: dict[str, Any]
    # The outbox row's id (relay side only; 0 once it came through the broker).
    row_id: int = 0

    def to_bytes(self) -> bytes:
        return json.dumps(
            {
                "event_id": self.event_id,
                "type": self.type,
                "key": self.key,
                "version": self.version,
                "occurred_at": self.occurred_at.isoformat(),
                "payload": self.payload,
            },
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_bytes(cls, body: bytes) -> Event:
        try:
            data = json.loads(body)
            return cls(
                event_id=str(data["event_id"]),
                type=str(data["type"]),
                key=int(data["key"]),
                version=int(data["version"]),
                occurred_at=datetime.fromisoformat(data["occurred_at"]),
                payload=dict(data["payload"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise MalformedEvent(f"not an event: {body[:200]!r}") from exc


def partition_of(key: int, partitions: int) -> int:
    return zlib.crc32(str(key).encode()) % partitions


def queue_name(exchange: str, group: str, partition: int) -> str:
    return f"{exchange}.{group}.p{partition}"


def routing_key(partition: int) -> str:
    return f"p{partition}"
