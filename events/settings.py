"""Settings of the relay and the consumers, read once from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAULTS = ("kill-before-mark", "kill-before-ack")


class SettingsError(Exception):
    """A setting is missing or malformed (an operator error at start-up)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class EventSettings:
    database_url: str
    # amqp://user:password@host:port/vhost; empty: the embedded mode (the relay applies events itself).
    broker_url: str
    # The exchange; each consumer group's queues are "<exchange>.<group>.p<n>".
    exchange: str
    partitions: int
    # The consumer groups whose queues the relay declares, so nothing is published before they exist.
    groups: tuple[str, ...]
    batch_size: int
    poll_seconds: float
    # Fault injection for the crash tests only (refused in production): the process kills itself
    # (SIGKILL) at that point once: after the broker confirmed a batch, before the rows are marked
    # (kill-before-mark, the relay); after a batch was committed, before it is acked (kill-before-ack).
    fault: str

    @property
    def embedded(self) -> bool:
        return not self.broker_url


def _number(env: Mapping[str, str], name: str, default: float, kind: type[int] | type[float]) -> float:
    raw = env.get(name, "")
    try:
        value = kind(raw) if raw else default
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if not value > 0:
        raise SettingsError(f"{name} must be above 0, got {raw!r}")
    return value


def load_settings(env: Mapping[str, str] = os.environ) -> EventSettings:
    var_dir = Path(env.get("VAR_DIR", str(ROOT / "var")))
    fault = env.get("EVENTS_FAULT", "")
    if fault and fault not in FAULTS:
        raise SettingsError(f"EVENTS_FAULT must be one of {', '.join(FAULTS)}, got {fault!r}")
    if fault and env.get("GATEWAY_ENV") == "production":
        raise SettingsError("EVENTS_FAULT is for the crash tests only, never production")
    groups = tuple(group for group in env.get("EVENTS_GROUPS", "catalog").split(",") if group)
    return EventSettings(
        database_url=env.get("DATABASE_URL", f"sqlite:///{var_dir / 'legacy.sqlite3'}"),
        broker_url=env.get("BROKER_URL", ""),
        exchange=env.get("EVENTS_EXCHANGE", "shop.events"),
        partitions=int(_number(env, "EVENTS_PARTITIONS", 8, int)),
        groups=groups,
        batch_size=int(_number(env, "EVENTS_BATCH", 200, int)),
        poll_seconds=float(_number(env, "EVENTS_POLL_SECONDS", 0.02, float)),
        fault=fault,
    )
