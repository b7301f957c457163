"""Settings for ``make run`` on a developer machine: SQLite under var/ unless DATABASE_URL says otherwise."""

from legacy_django.config.django.base import *  # noqa: F403
