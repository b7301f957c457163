"""The payments service's own settings (the providers, timeouts, breaker, reconciliation), read once
from the environment; the HTTP service itself is configured by ``services.common.settings``."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from services.common.settings import SettingsError

DEFAULT_PROVIDERS = "a=http://127.0.0.1:8101,b=http://127.0.0.1:8102"
_NAME_RE = re.compile(r"[a-z][a-z0-9_-]{0,49}")


@dataclass(frozen=True, kw_only=True, slots=True)
class Provider:
    """A payment provider (PG): its name in our records, its base URL and its share of the traffic."""

    name: str
    url: str
    weight: int = 1


@dataclass(frozen=True, kw_only=True, slots=True)
class PaymentsSettings:
    providers: tuple[Provider, ...]
    # Seconds to open a connection to a provider; a refused or unopened connection sent nothing.
    connect_timeout: float
    # Seconds to wait for a provider's answer to a charge; past it the outcome is unclear.
    provider_timeout: float
    # Seconds to wait for a status (or refund) answer, and how many times to ask again.
    status_timeout: float
    status_retries: int
    # A charge slower than this counts against the provider's breaker as soon as it is this late.
    slow_ms: int
    # How long an open breaker keeps traffic away before one probe may go through.
    breaker_open_seconds: float
    # Every so many seconds the service settles pending payments and audits unclear ones (0: never;
    # then only ``python -m services.payments reconcile`` does).
    reconcile_seconds: float
    # A payment that had an unclear attempt is checked in every ledger again this much later.
    audit_seconds: float


def _float(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    raw = env.get(name, "")
    if raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if not value >= minimum:
        raise SettingsError(f"{name} must be at least {minimum:g}, got {raw!r}")
    return value


def _count(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "")
    if raw == "":
        return default
    if not raw.isdigit() or int(raw) > 10:
        raise SettingsError(f"{name} must be an integer from 0 to 10, got {raw!r}")
    return int(raw)


def parse_providers(raw: str) -> tuple[Provider, ...]:
    """``a=http://127.0.0.1:8101;weight=3,b=http://127.0.0.1:8102``: name=url, an optional weight (1)."""
    providers: list[Provider] = []
    for entry in (part.strip() for part in raw.split(",")):
        if not entry:
            continue
        name, sep, rest = entry.partition("=")
        url, *options = rest.split(";")
        parts = urlsplit(url.strip())
        if not sep or not _NAME_RE.fullmatch(name.strip()):
            raise SettingsError(f"PAYMENTS_PROVIDERS: {entry!r} must be name=url (name: a-z, 0-9, _ or -)")
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise SettingsError(f"PAYMENTS_PROVIDERS: {entry!r} needs an http(s) URL")
        weight = 1
        for option in options:
            key, _, value = option.strip().partition("=")
            if key != "weight" or not value.isdigit() or not 1 <= int(value) <= 1000:
                raise SettingsError(f"PAYMENTS_PROVIDERS: {entry!r}: only weight=1..1000 may follow the url")
            weight = int(value)
        providers.append(Provider(name=name.strip(), url=url.strip().rstrip("/"), weight=weight))
    if not providers:
        raise SettingsError("PAYMENTS_PROVIDERS must name at least one provider")
    if len({provider.name for provider in providers}) != len(providers):
        raise SettingsError("PAYMENTS_PROVIDERS names a provider twice")
    return tuple(providers)


def load_payments_settings(env: Mapping[str, str] = os.environ) -> PaymentsSettings:
    return PaymentsSettings(
        providers=parse_providers(env.get("PAYMENTS_PROVIDERS") or DEFAULT_PROVIDERS),
        connect_timeout=_float(env, "PAYMENTS_CONNECT_TIMEOUT", 0.5, 0.001),
        provider_timeout=_float(env, "PAYMENTS_PROVIDER_TIMEOUT", 2.0, 0.001),
        status_timeout=_float(env, "PAYMENTS_STATUS_TIMEOUT", 1.0, 0.001),
        status_retries=_count(env, "PAYMENTS_STATUS_RETRIES", 2),
        slow_ms=int(_float(env, "PAYMENTS_SLOW_MS", 1000, 1)),
        breaker_open_seconds=_float(env, "PAYMENTS_BREAKER_OPEN_SECONDS", 5.0, 0.01),
        reconcile_seconds=_float(env, "PAYMENTS_RECONCILE_SECONDS", 5.0),
        audit_seconds=_float(env, "PAYMENTS_AUDIT_SECONDS", 30.0),
    )
