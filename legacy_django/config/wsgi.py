"""WSGI entry point for gunicorn (see docs/adr/0002-legacy-served-by-gunicorn.md)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "legacy_django.config.django.local")
application = get_wsgi_application()
