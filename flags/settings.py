"""Flag settings from the environment, and the one place that builds the stores and providers."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flags.decide import Flags, Provider
from flags.model import flag_key
from flags.overrides import FileOverrideStore, OverrideStore, RedisOverrideStore
from flags.providers import FileFlagProvider, UnleashProvider
from flags.routes_file import route_ids, routes_file

ROOT = Path(__file__).resolve().parents[1]


class FlagsConfigError(Exception):
    """A flag setting is malformed."""


@dataclass(frozen=True, kw_only=True, slots=True)
class FlagsSettings:
    flags_file: Path
    overrides_file: Path
    audit_file: Path
    redis_url: str | None
    unleash_url: str | None
    unleash_api_token: str | None
    unleash_refresh_seconds: float
    unleash_cache_file: Path
    # The gateway's route table: its routes are the hot routes (flagctl, the default flags).
    routes_file: Path


def load_flags_settings(env: Mapping[str, str] = os.environ) -> FlagsSettings:
    var = Path(env.get("VAR_DIR", str(ROOT / "var")))
    unleash_url = env.get("UNLEASH_URL") or None
    token = env.get("UNLEASH_API_TOKEN") or None
    if unleash_url and not token:
        raise FlagsConfigError("UNLEASH_URL is set but UNLEASH_API_TOKEN is not (a backend token)")
    try:
        refresh = float(env.get("UNLEASH_REFRESH_SECONDS", "15"))
    except ValueError:
        raise FlagsConfigError("UNLEASH_REFRESH_SECONDS must be a number of seconds") from None
    return FlagsSettings(
        flags_file=Path(env.get("FLAGS_FILE", str(var / "flags.json"))),
        overrides_file=Path(env.get("OVERRIDES_FILE", str(var / "overrides.json"))),
        audit_file=Path(env.get("AUDIT_FILE", str(var / "audit.jsonl"))),
        redis_url=env.get("REDIS_URL") or None,
        unleash_url=unleash_url,
        unleash_api_token=token,
        unleash_refresh_seconds=refresh,
        unleash_cache_file=Path(env.get("UNLEASH_CACHE_FILE", str(var / "unleash-cache.json"))),
        routes_file=routes_file(env),
    )


def default_flags(routes: Iterable[str]) -> dict[str, Any]:
    """The flags file for these routes in Unleash's client-features format: one toggle per route,
    disabled (the route goes to legacy), a 100 % flexible rollout once someone enables it."""
    return {
        "version": 1,
        "features": [
            {
                "name": flag_key(route_id),
                "description": f"Send {route_id} to its new service",
                "type": "release",
                "enabled": False,
                "strategies": [
                    {
                        "name": "flexibleRollout",
                        "parameters": {
                            "rollout": "100",
                            "stickiness": "default",
                            "groupId": flag_key(route_id),
                        },
                        "constraints": [],
                    }
                ],
                "variants": [],
            }
            for route_id in routes
        ],
    }


def ensure_flags_file(settings: FlagsSettings) -> None:
    """First start: write the default flags (every route of the route table off) to FLAGS_FILE."""
    if settings.flags_file.exists():
        return
    document = default_flags(route_ids(settings.routes_file))
    settings.flags_file.parent.mkdir(parents=True, exist_ok=True)
    # Written whole, then renamed: the file provider never reads half a document.
    partial = settings.flags_file.with_name(settings.flags_file.name + ".partial")
    partial.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    partial.replace(settings.flags_file)


def override_store(settings: FlagsSettings) -> OverrideStore:
    if settings.redis_url:
        return RedisOverrideStore(settings.redis_url)
    return FileOverrideStore(settings.overrides_file, settings.audit_file)


def build_flags(settings: FlagsSettings) -> Flags:
    """Stores and providers, not started: call ``start()`` in the worker (after any fork)."""
    providers: list[Provider] = []
    if settings.unleash_url and settings.unleash_api_token:
        providers.append(
            UnleashProvider(
                settings.unleash_url,
                settings.unleash_api_token,
                cache_file=settings.unleash_cache_file,
                refresh_seconds=settings.unleash_refresh_seconds,
            )
        )
    providers.append(FileFlagProvider(settings.flags_file))
    return Flags(overrides=override_store(settings), providers=providers)
