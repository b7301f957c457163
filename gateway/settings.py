"""Gateway settings, read once from the environment (names and defaults: the README's Configuration table)."""

from __future__ import annotations

import os
import resource
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gateway.live import LIVE_DIR_ENV
from identity.dev import DEV_SECRET

DEFAULT_ROUTES_FILE = Path(__file__).with_name("routes.toml")


# The gateway's HTTP/1.1 server layers, the default first (docs/adr/0020-gateway-server-layer.md).
SERVERS = ("native", "uvicorn")


class SettingsError(Exception):
    """A setting is missing or malformed."""


@dataclass(frozen=True, kw_only=True, slots=True)
class GatewaySettings:
    host: str
    port: int
    workers: int
    server: str  # the HTTP/1.1 server layer: "native" (gateway/http1.py) or "uvicorn"
    environment: str
    legacy_url: str
    reviews_url: str
    recommendations_url: str
    catalog_url: str
    jwks_url: str
    jwt_issuer: str
    jwt_audience: str
    identity_secret: str
    admin_token: str
    routes_file: Path
    max_body_bytes: int
    max_token_cache: int
    jwks_refresh_seconds: float
    capture_file: Path | None
    access_log: bool
    var_dir: Path
    # Where workers publish their live figures for each other (set by ``python -m gateway``).
    live_dir: Path | None
    # Request-head limits, timeouts and connection cap of the gateway's HTTP server (gateway/server.py).
    max_url_bytes: int
    max_header_bytes: int
    max_header_line_bytes: int
    max_headers: int
    header_timeout: float
    body_timeout: float
    idle_timeout: float
    max_connections: int  # per worker

    def cluster_urls(self) -> dict[str, str]:
        return {
            "legacy": self.legacy_url,
            "reviews": self.reviews_url,
            "recommendations": self.recommendations_url,
            "catalog": self.catalog_url,
        }


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "")
    try:
        return int(raw) if raw else default
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    """One of ``choices`` (the first when unset)."""
    raw = env.get(name, "").strip().lower() or choices[0]
    if raw not in choices:
        raise SettingsError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def _positive(env: Mapping[str, str], name: str, default: float, kind: type[int] | type[float]) -> float:
    raw = env.get(name, "")
    try:
        value = kind(raw) if raw else default
    except ValueError:
        raise SettingsError(f"{name} must be a positive number, got {raw!r}") from None
    if value <= 0:
        raise SettingsError(f"{name} must be a positive number, got {raw!r}")
    return value


def default_max_connections() -> int:
    """4096 per worker, or half the open-file limit if that is lower: the other half is for upstream
    connections, Redis and logs. Past the limit accept() fails and new clients get no answer at all."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 4096 if soft == resource.RLIM_INFINITY else max(1, min(4096, soft // 2))


def load_settings(env: Mapping[str, str] = os.environ) -> GatewaySettings:
    legacy = env.get("LEGACY_URL", "http://127.0.0.1:8001").rstrip("/")
    environment = env.get("GATEWAY_ENV", "development")
    secret = env.get("IDENTITY_SECRET", DEV_SECRET)
    admin_token = env.get("GATEWAY_ADMIN_TOKEN", "")
    if environment == "production" and secret == DEV_SECRET:
        raise SettingsError("IDENTITY_SECRET must be set when GATEWAY_ENV=production")
    if environment == "production" and len(admin_token) < 16:
        raise SettingsError("GATEWAY_ADMIN_TOKEN must be set (16+ characters) when GATEWAY_ENV=production")
    return GatewaySettings(
        host=env.get("GATEWAY_HOST", "127.0.0.1"),
        port=_int(env, "GATEWAY_PORT", 8000),
        workers=_int(env, "GATEWAY_WORKERS", 1),
        server=_choice(env, "GATEWAY_SERVER", SERVERS),
        environment=environment,
        legacy_url=legacy,
        reviews_url=env.get("REVIEWS_URL", "http://127.0.0.1:8002").rstrip("/"),
        recommendations_url=env.get("RECOMMENDATIONS_URL", "http://127.0.0.1:8003").rstrip("/"),
        catalog_url=env.get("CATALOG_URL", "http://127.0.0.1:8004").rstrip("/"),
        jwks_url=env.get("JWT_JWKS_URL", f"{legacy}/.well-known/jwks.json"),
        jwt_issuer=env.get("JWT_ISSUER", "shop-legacy"),
        jwt_audience=env.get("JWT_AUDIENCE", "shop-api"),
        identity_secret=secret,
        admin_token=admin_token or "dev-only-admin-token",
        routes_file=Path(env.get("ROUTES_FILE", str(DEFAULT_ROUTES_FILE))),
        max_body_bytes=_int(env, "GATEWAY_MAX_BODY_BYTES", 1024 * 1024),
        max_token_cache=_int(env, "GATEWAY_TOKEN_CACHE", 100_000),
        jwks_refresh_seconds=_positive(env, "GATEWAY_JWKS_REFRESH_SECONDS", 5.0, float),
        # Under what legacy's gunicorn accepts (4,094-byte request line, 8,190-byte header line, 100
        # headers, of which the gateway adds ~9): the gateway refuses first, in its envelope.
        max_url_bytes=int(_positive(env, "GATEWAY_MAX_URL_BYTES", 4000, int)),
        max_header_bytes=int(_positive(env, "GATEWAY_MAX_HEADER_BYTES", 32768, int)),
        max_header_line_bytes=int(_positive(env, "GATEWAY_MAX_HEADER_LINE_BYTES", 8000, int)),
        max_headers=int(_positive(env, "GATEWAY_MAX_HEADERS", 64, int)),
        header_timeout=_positive(env, "GATEWAY_HEADER_TIMEOUT", 10.0, float),
        body_timeout=_positive(env, "GATEWAY_BODY_TIMEOUT", 15.0, float),
        idle_timeout=_positive(env, "GATEWAY_IDLE_TIMEOUT", 15.0, float),
        max_connections=int(_positive(env, "GATEWAY_MAX_CONNECTIONS", default_max_connections(), int)),
        capture_file=Path(env["GATEWAY_CAPTURE_FILE"]) if env.get("GATEWAY_CAPTURE_FILE") else None,
        access_log=env.get("GATEWAY_ACCESS_LOG", "true").lower() not in {"0", "false", "no", "off"},
        var_dir=Path(env.get("VAR_DIR", str(DEFAULT_ROUTES_FILE.parents[1] / "var"))),
        live_dir=Path(env[LIVE_DIR_ENV]) if env.get(LIVE_DIR_ENV) else None,
    )
