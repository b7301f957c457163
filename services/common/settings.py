"""Service settings, read once from the environment into a frozen object."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from identity.dev import DEV_SECRET

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
# Connections of a service's PostgreSQL read pool: a request holds one for a single statement, so a
# few keep one worker busy. ADR 0021 measured 2 to 16 per worker on 2 cores: 8 served reviews.summary
# best; recommendations.home, whose statement costs PostgreSQL more CPU than the worker, did best on 4.
DEFAULT_DB_POOL_SIZE = 8
DEFAULT_DB_POOL_SIZES = {"recommendations": 4}


class SettingsError(Exception):
    """A setting is missing or malformed (an operator error at start-up)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ServiceSettings:
    name: str
    host: str
    port: int
    workers: int
    database_url: str
    identity_secret: str
    # Also accept v1 assertions (no query, no body bound) while an old gateway is still running.
    identity_accept_v1: bool
    max_body_bytes: int
    log_level: str
    # PostgreSQL connections of the read pool (``{PREFIX}_DB_POOL_SIZE``; ADR 0021).
    db_pool_size: int = DEFAULT_DB_POOL_SIZE


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "")
    if raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").lower()
    if raw == "":
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


def load_settings(name: str, env: Mapping[str, str] = os.environ) -> ServiceSettings:
    """``name`` is ``reviews``, ``recommendations``, ``catalog`` or ``payments``: it picks ``REVIEWS_URL``
    etc. and the default port."""
    default_port = {"reviews": 8002, "recommendations": 8003, "catalog": 8004, "payments": 8005}[name]
    prefix = name.upper()
    url = urlsplit(env.get(f"{prefix}_URL", f"http://127.0.0.1:{default_port}"))
    var_dir = Path(env.get("VAR_DIR", str(ROOT / "var")))
    secret = env.get("IDENTITY_SECRET", DEV_SECRET)
    if env.get("GATEWAY_ENV") == "production" and secret == DEV_SECRET:
        raise SettingsError("IDENTITY_SECRET must be set when GATEWAY_ENV=production")
    return ServiceSettings(
        name=name,
        # {PREFIX}_HOST overrides the bind address (containers bind 0.0.0.0 while others call them by name).
        host=env.get(f"{prefix}_HOST") or url.hostname or "127.0.0.1",
        port=url.port or default_port,
        workers=_int(env, f"{prefix}_WORKERS", 1),
        database_url=env.get("DATABASE_URL", f"sqlite:///{var_dir / 'legacy.sqlite3'}"),
        identity_secret=secret,
        identity_accept_v1=_bool(env, "IDENTITY_ACCEPT_V1", False),
        max_body_bytes=_int(env, "SERVICE_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES),
        log_level=env.get("LOG_LEVEL", "info").lower(),
        db_pool_size=_int(
            env, f"{prefix}_DB_POOL_SIZE", DEFAULT_DB_POOL_SIZES.get(name, DEFAULT_DB_POOL_SIZE)
        ),
    )
