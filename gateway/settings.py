"""Gateway settings, read once from the environment (ARCHITECTURE.md names and defaults)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEV_IDENTITY_SECRET = "dev-only-identity-secret"  # noqa: S105 - refused in production below
DEFAULT_ROUTES_FILE = Path(__file__).with_name("routes.toml")


class SettingsError(Exception):
    """A setting is missing or malformed."""


@dataclass(frozen=True, kw_only=True, slots=True)
class GatewaySettings:
    host: str
    port: int
    workers: int
    environment: str
    legacy_url: str
    reviews_url: str
    recommendations_url: str
    jwks_url: str
    jwt_issuer: str
    jwt_audience: str
    identity_secret: str
    admin_token: str
    routes_file: Path
    max_body_bytes: int
    max_token_cache: int
    capture_file: Path | None
    access_log: bool

    def cluster_urls(self) -> dict[str, str]:
        return {
            "legacy": self.legacy_url,
            "reviews": self.reviews_url,
            "recommendations": self.recommendations_url,
        }


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "")
    try:
        return int(raw) if raw else default
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None


def load_settings(env: Mapping[str, str] = os.environ) -> GatewaySettings:
    legacy = env.get("LEGACY_URL", "http://127.0.0.1:8001").rstrip("/")
    environment = env.get("GATEWAY_ENV", "development")
    secret = env.get("IDENTITY_SECRET", DEV_IDENTITY_SECRET)
    admin_token = env.get("GATEWAY_ADMIN_TOKEN", "")
    if environment == "production" and secret == DEV_IDENTITY_SECRET:
        raise SettingsError("IDENTITY_SECRET must be set when GATEWAY_ENV=production")
    if environment == "production" and len(admin_token) < 16:
        raise SettingsError("GATEWAY_ADMIN_TOKEN must be set (16+ characters) when GATEWAY_ENV=production")
    return GatewaySettings(
        host=env.get("GATEWAY_HOST", "127.0.0.1"),
        port=_int(env, "GATEWAY_PORT", 8000),
        workers=_int(env, "GATEWAY_WORKERS", 1),
        environment=environment,
        legacy_url=legacy,
        reviews_url=env.get("REVIEWS_URL", "http://127.0.0.1:8002").rstrip("/"),
        recommendations_url=env.get("RECOMMENDATIONS_URL", "http://127.0.0.1:8003").rstrip("/"),
        jwks_url=env.get("JWT_JWKS_URL", f"{legacy}/.well-known/jwks.json"),
        jwt_issuer=env.get("JWT_ISSUER", "shop-legacy"),
        jwt_audience=env.get("JWT_AUDIENCE", "shop-api"),
        identity_secret=secret,
        admin_token=admin_token or "dev-only-admin-token",
        routes_file=Path(env.get("ROUTES_FILE", str(DEFAULT_ROUTES_FILE))),
        max_body_bytes=_int(env, "GATEWAY_MAX_BODY_BYTES", 1024 * 1024),
        max_token_cache=_int(env, "GATEWAY_TOKEN_CACHE", 100_000),
        capture_file=Path(env["GATEWAY_CAPTURE_FILE"]) if env.get("GATEWAY_CAPTURE_FILE") else None,
        access_log=env.get("GATEWAY_ACCESS_LOG", "true").lower() not in {"0", "false", "no", "off"},
    )
