import pytest

from services.common.db import async_url
from services.common.settings import SettingsError, load_settings


def test_defaults_bind_the_documented_ports():
    reviews = load_settings("reviews", {})
    recommendations = load_settings("recommendations", {})
    assert (reviews.host, reviews.port, reviews.workers) == ("127.0.0.1", 8002, 1)
    assert recommendations.port == 8003
    assert reviews.database_url.startswith("sqlite:///") and reviews.database_url.endswith(
        "var/legacy.sqlite3"
    )


def test_environment_overrides():
    settings = load_settings(
        "reviews",
        {
            "REVIEWS_URL": "http://127.0.0.2:9102",
            "REVIEWS_WORKERS": "3",
            "DATABASE_URL": "postgres://u@db/shop",
            "IDENTITY_SECRET": "s3cret",
        },
    )
    assert (settings.host, settings.port, settings.workers) == ("127.0.0.2", 9102, 3)
    assert settings.database_url == "postgres://u@db/shop"
    assert settings.identity_secret == "s3cret"


def test_production_refuses_the_dev_identity_secret():
    with pytest.raises(SettingsError, match="IDENTITY_SECRET"):
        load_settings("reviews", {"GATEWAY_ENV": "production"})


def test_v1_assertions_are_refused_unless_the_upgrade_window_is_opened():
    assert load_settings("reviews", {}).identity_accept_v1 is False
    assert load_settings("reviews", {"IDENTITY_ACCEPT_V1": "true"}).identity_accept_v1 is True
    with pytest.raises(SettingsError, match="IDENTITY_ACCEPT_V1"):
        load_settings("reviews", {"IDENTITY_ACCEPT_V1": "maybe"})


def test_malformed_numbers_are_named():
    with pytest.raises(SettingsError, match="REVIEWS_WORKERS"):
        load_settings("reviews", {"REVIEWS_WORKERS": "many"})


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:////tmp/x.sqlite3", "sqlite+aiosqlite:////tmp/x.sqlite3"),
        ("postgres://u@h:5432/db", "postgresql+asyncpg://u@h:5432/db"),
        ("postgresql://u@h/db", "postgresql+asyncpg://u@h/db"),
    ],
)
def test_database_urls_map_to_async_drivers(url, expected):
    assert async_url(url) == expected


@pytest.mark.parametrize("url", ["mysql://u@h/db", "not a url"])
def test_unsupported_database_urls_are_refused(url):
    with pytest.raises(ValueError):
        async_url(url)
