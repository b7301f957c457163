"""Settings for the test suite: fast password hashing; the database still comes from DATABASE_URL."""

import os
import tempfile
from pathlib import Path

from legacy_django.config.django.base import *  # noqa: F403
from legacy_django.config.django.base import DATABASES

# The production hasher costs ~0.3 s per check by design; tests log in hundreds of times.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The test database is a file (one per test process), as in production, not Django's default
    # shared-cache in-memory database: there a second writer fails at once ("database table is
    # locked") instead of waiting for the first, so concurrency tests could not show SQLite's locking.
    DATABASES["default"]["TEST"] = {
        "NAME": str(Path(tempfile.gettempdir()) / f"legacy-test-{os.getpid()}.sqlite3")
    }
