"""Settings for the test suite: fast password hashing; the database still comes from DATABASE_URL."""

from legacy_django.config.django.base import *  # noqa: F403

# The production hasher costs ~0.3 s per check by design; tests log in hundreds of times.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
