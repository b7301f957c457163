"""Settings shared by every environment; every value can come from the environment."""

from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from identity.dev import DEV_SECRET
from legacy_django.config.env import env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parents[3]
VAR_DIR = Path(env_str("VAR_DIR", str(BASE_DIR / "var")))

SECRET_KEY = env_str("DJANGO_SECRET_KEY", "dev-only-insecure-django-secret-key")
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "*")
GATEWAY_ENV = env_str("GATEWAY_ENV", "development")

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "legacy_django.users",
    "legacy_django.items",
    "legacy_django.commerce",
    "legacy_django.activation",
    "legacy_django.reviews",
    "legacy_django.search",
    "legacy_django.content",
    "legacy_django.catalog",
    "legacy_django.seed",
]

MIDDLEWARE = [
    # First: a request past the gateway's deadline is refused before anything else does work.
    "legacy_django.common.middleware.DeadlineMiddleware",
    "legacy_django.common.middleware.RequestIdMiddleware",
    "legacy_django.common.middleware.ErrorEnvelopeMiddleware",
    "legacy_django.common.middleware.PrincipalMiddleware",
]

ROOT_URLCONF = "legacy_django.config.urls"
WSGI_APPLICATION = "legacy_django.config.wsgi.application"
APPEND_SLASH = False
USE_TZ = True
TIME_ZONE = "UTC"
USE_I18N = False
LANGUAGE_CODE = "en-us"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "users.User"
TEMPLATES: list[dict[str, object]] = []

# Requests larger than this get a 413 envelope before any parsing.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("LEGACY_MAX_BODY_BYTES", 1024 * 1024)

DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'legacy.sqlite3'}")
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the services read the same file while the monolith writes;
    # IMMEDIATE makes write transactions take the lock up front instead of failing mid-way.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }

# The order in which a purchase takes stock (ADR 0015). "ordered" (the default and the only one for
# production): every option by id, then each item once. "naive" reproduces the time-deal incident
# (option, item, option, item ... in request order: deadlocks on PostgreSQL); it exists only so that
# bench/timedeal.py measures the "before", and is refused when GATEWAY_ENV=production.
STOCK_STRATEGY = env_str("LEGACY_STOCK_STRATEGY", "ordered")
if STOCK_STRATEGY not in {"ordered", "naive"}:
    raise ImproperlyConfigured(f"LEGACY_STOCK_STRATEGY must be ordered or naive, got {STOCK_STRATEGY!r}")
if GATEWAY_ENV == "production" and STOCK_STRATEGY != "ordered":
    raise ImproperlyConfigured("LEGACY_STOCK_STRATEGY=naive is for the benchmark only, never production")

# The payments service (checkout, ADR 0017): where it answers, and how long a payment may take before the
# order is left payment_pending (the payment may still settle; paying again asks for the same payment).
PAYMENTS_URL = env_str("PAYMENTS_URL", "http://127.0.0.1:8005").rstrip("/")
PAYMENTS_TIMEOUT_SECONDS = env_int("PAYMENTS_TIMEOUT_SECONDS", 10)

# Auth issuer (RS256 access tokens, JWKS).
JWT_ISSUER = env_str("JWT_ISSUER", "shop-legacy")
JWT_AUDIENCE = env_str("JWT_AUDIENCE", "shop-api")
JWT_ACCESS_TTL_SECONDS = env_int("JWT_ACCESS_TTL_SECONDS", 900)
JWT_LEEWAY_SECONDS = env_int("JWT_LEEWAY_SECONDS", 60)
JWT_KEYS_DIR = Path(env_str("JWT_KEYS_DIR", str(VAR_DIR / "keys")))
JWT_PRIVATE_KEY = env_str("JWT_PRIVATE_KEY", "")
JWT_PREVIOUS_PUBLIC_KEYS = env_str("JWT_PREVIOUS_PUBLIC_KEYS", "")

# Identity assertion from the gateway (see the identity package).
IDENTITY_SECRET = env_str("IDENTITY_SECRET", DEV_SECRET)  # refused in production below
# Also accept v1 assertions (no query, no body bound) while an old gateway is still running.
IDENTITY_ACCEPT_V1 = env_bool("IDENTITY_ACCEPT_V1", False)
if GATEWAY_ENV == "production" and IDENTITY_SECRET == DEV_SECRET:
    raise ImproperlyConfigured("IDENTITY_SECRET must be set when GATEWAY_ENV=production")
if GATEWAY_ENV == "production" and SECRET_KEY.startswith("dev-only"):
    raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set when GATEWAY_ENV=production")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["stderr"], "level": env_str("LOG_LEVEL", "INFO")},
    # Our error middleware logs failures once; Django's own request logger would log them twice.
    "loggers": {"django.request": {"level": "CRITICAL"}},
}
