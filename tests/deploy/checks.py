"""Checks of the deployment files that need no Docker engine and no cluster.

What they prove: the compose file is well-formed and consistent with the code (every variable it sets is
one an app reads, the secrets and URLs each app needs are set, long-running services have health checks,
start-up order waits on health, only the gateway and Unleash are published, ports agree); the kustomize
output renders and is valid against the Kubernetes schemas. What they cannot prove: that the images build
and the containers start (no Docker engine here) or that a cluster accepts the rollout.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_TOP_LEVEL = {"name", "services", "volumes", "networks", "configs", "secrets"}
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
APP_IMAGE = "strangler-gateway:local"
# Files whose environment reads define what the apps understand.
READERS = [
    "gateway/settings.py",
    "services/common/settings.py",
    "services/payments/settings.py",
    "events/settings.py",
    "legacy_django/config/django/base.py",
    "legacy_django/config/django/local.py",
    "flags/settings.py",
    "deploy/entrypoint.sh",
    "deploy/Dockerfile",
]
_READ = re.compile(
    r"""(?:env(?:_str|_int|_bool|_list)?|_int|environ)(?:\.get)?\(\s*(?:env,\s*)?["']([A-Z][A-Z0-9_]+)["']"""
)
_SHELL = re.compile(r"\$\{([A-Z][A-Z0-9_]+)")
_DOCKER_ENV = re.compile(r"\b([A-Z][A-Z0-9_]+)=")
REQUIRED = {
    "legacy": {"DATABASE_URL", "IDENTITY_SECRET", "DJANGO_SECRET_KEY", "PAYMENTS_URL"},
    "reviews": {"DATABASE_URL", "IDENTITY_SECRET", "REVIEWS_HOST"},
    "recommendations": {"DATABASE_URL", "IDENTITY_SECRET", "RECOMMENDATIONS_HOST"},
    "payments": {"DATABASE_URL", "IDENTITY_SECRET", "PAYMENTS_HOST", "PAYMENTS_PROVIDERS"},
    "catalog": {"DATABASE_URL", "IDENTITY_SECRET", "CATALOG_HOST"},
    "relay": {"DATABASE_URL", "BROKER_URL"},
    "catalog-consumer": {"DATABASE_URL", "BROKER_URL"},
    "gateway": {
        "IDENTITY_SECRET",
        "GATEWAY_ADMIN_TOKEN",
        "GATEWAY_HOST",
        "LEGACY_URL",
        "REVIEWS_URL",
        "RECOMMENDATIONS_URL",
        "REDIS_URL",
    },
    "migrate": {"DATABASE_URL", "DJANGO_SECRET_KEY", "IDENTITY_SECRET"},
}
PUBLISHED = {"gateway", "unleash"}


def names_the_apps_read() -> set[str]:
    names: set[str] = set()
    for relative in READERS:
        text = (ROOT / relative).read_text()
        names |= set(_READ.findall(text)) | set(_SHELL.findall(text))
        if relative.endswith("Dockerfile"):
            names |= set(_DOCKER_ENV.findall(text))
    # services/common/settings.py reads {PREFIX}_URL, _WORKERS and _HOST for each service.
    for prefix in ("REVIEWS", "RECOMMENDATIONS", "PAYMENTS", "CATALOG"):
        names |= {f"{prefix}_URL", f"{prefix}_WORKERS", f"{prefix}_HOST"}
    return names


def _port(url: str) -> str | None:
    match = re.search(r":(\d+)(?:/|$)", url)
    return match.group(1) if match else None


def compose_problems(document: Mapping[str, Any], readable: set[str], env_example: set[str]) -> list[str]:
    problems: list[str] = []
    for key in document:
        if key not in COMPOSE_TOP_LEVEL and not str(key).startswith("x-"):
            problems.append(f"unknown top-level key {key!r}")
    services: Mapping[str, Any] = document.get("services") or {}
    for name, service in services.items():
        if not isinstance(service, Mapping):
            problems.append(f"{name}: not a mapping")
            continue
        if "image" not in service and "build" not in service:
            problems.append(f"{name}: needs an image or a build")
        one_shot = service.get("restart") == "no"
        health = service.get("healthcheck") or {}
        if not one_shot and not health.get("test"):
            problems.append(f"{name}: a long-running service needs a health check")
        for target, spec in (service.get("depends_on") or {}).items():
            condition = spec.get("condition") if isinstance(spec, Mapping) else None
            if target not in services:
                problems.append(f"{name}: depends on unknown service {target}")
            elif condition not in CONDITIONS:
                problems.append(f"{name}: depends_on {target} has condition {condition!r}")
            elif condition == "service_healthy" and not (services[target].get("healthcheck") or {}).get(
                "test"
            ):
                problems.append(f"{name}: waits for {target} to be healthy but {target} has no health check")
        if service.get("ports") and name not in PUBLISHED:
            problems.append(f"{name}: only {sorted(PUBLISHED)} may publish ports")
        if service.get("image") == APP_IMAGE:
            environment = service.get("environment") or {}
            for variable in environment:
                if variable not in readable:
                    problems.append(f"{name}: sets {variable}, which no app reads")
            missing = REQUIRED.get(name, set()) - set(environment)
            if missing:
                problems.append(f"{name}: needs {sorted(missing)}")
            health_test = " ".join(health.get("test") or [])
            own_port = {
                "legacy": "8001",
                "reviews": "8002",
                "recommendations": "8003",
                "payments": "8005",
                "catalog": "8004",
                "pg-a": "8101",
                "pg-b": "8102",
                "gateway": "8000",
            }.get(name)
            if own_port and own_port not in health_test:
                problems.append(f"{name}: its health check does not call its own port {own_port}")
        for value in _all_strings(service):
            for variable in re.findall(r"\$\{([A-Z0-9_]+)\}", value):
                if variable not in env_example:
                    problems.append(f"{name}: uses ${{{variable}}} but .env.example does not define it")
    gateway = services.get("gateway") or {}
    ports = [str(p) for p in gateway.get("ports") or []]
    gateway_port = str((gateway.get("environment") or {}).get("GATEWAY_PORT", "8000"))
    if ports and not any(p.endswith(f":{gateway_port}") for p in ports):
        problems.append(f"gateway: publishes {ports} but listens on {gateway_port}")
    return problems


def _all_strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return [s for item in value.values() for s in _all_strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in _all_strings(item)]
    return []


def env_example_names() -> set[str]:
    return {
        line.split("=", 1)[0].strip()
        for line in (ROOT / ".env.example").read_text().splitlines()
        if "=" in line and not line.lstrip().startswith("#")
    }
