"""docker-compose.yml against the code and its own rules (no Docker engine: nothing is built or started)."""

from __future__ import annotations

import copy

import pytest
import yaml

from tests.deploy.checks import ROOT, compose_problems, env_example_names, names_the_apps_read


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def problems(document: dict) -> list[str]:
    return compose_problems(document, names_the_apps_read(), env_example_names())


def test_the_compose_file_is_consistent_with_the_code(compose):
    assert problems(compose) == []


def test_every_service_of_the_stack_is_there(compose):
    assert set(compose["services"]) == {
        "postgres",
        "redis",
        "unleash",
        "migrate",
        "legacy",
        "reviews",
        "recommendations",
        "payments",
        "pg-a",
        "pg-b",
        "rabbitmq",
        "catalog",
        "relay",
        "catalog-consumer",
        "gateway",
    }


def test_the_env_reader_scan_finds_what_the_apps_read():
    names = names_the_apps_read()
    assert {
        "GATEWAY_PORT",
        "DATABASE_URL",
        "IDENTITY_SECRET",
        "REDIS_URL",
        "UNLEASH_API_TOKEN",
        "LEGACY_WORKERS",
        "SEED_SCALE",
        "HEALTH_URL",
        "REVIEWS_HOST",
        "JWT_ISSUER",
    } <= names


@pytest.mark.parametrize(
    ("plant", "expected"),
    [
        (
            lambda c: c["services"]["gateway"]["environment"].update({"GATEWAY_PROT": "8000"}),
            "sets GATEWAY_PROT",
        ),
        (
            lambda c: c["services"]["reviews"].pop("healthcheck"),
            "reviews: a long-running service needs a health check",
        ),
        (
            lambda c: c["services"]["gateway"]["depends_on"]["legacy"].update({"condition": "healthy"}),
            "condition 'healthy'",
        ),
        (lambda c: c["services"]["legacy"].update({"ports": ["8001:8001"]}), "legacy: only"),
        (lambda c: c["services"]["payments"].update({"ports": ["8005:8005"]}), "payments: only"),
        (
            lambda c: c["services"]["gateway"]["environment"].pop("IDENTITY_SECRET"),
            "needs ['IDENTITY_SECRET']",
        ),
        (lambda c: c.update({"service": {}}), "unknown top-level key 'service'"),
        (lambda c: c["services"]["gateway"].update({"ports": ["8000:8080"]}), "listens on 8000"),
        (
            lambda c: c["services"]["legacy"]["environment"].update({"DATABASE_URL": "${DB_PASSWORD}"}),
            "DB_PASSWORD",
        ),
    ],
)
def test_planted_errors_are_caught(compose, plant, expected):
    broken = copy.deepcopy(compose)
    for service in broken["services"].values():  # the YAML anchors share objects; unshare before planting
        if "environment" in service:
            service["environment"] = dict(service["environment"])
    plant(broken)
    found = problems(broken)
    assert any(expected in problem for problem in found), found
