#!/bin/sh
# Container entry point: `shop gateway|legacy|reviews|recommendations|migrate`.
set -eu
case "${1:-gateway}" in
  gateway) exec gateway ;;
  legacy)
    exec gunicorn legacy_django.config.wsgi:application --bind "0.0.0.0:${LEGACY_PORT:-8001}" \
      --worker-class gthread --workers "${LEGACY_WORKERS:-2}" --threads "${LEGACY_THREADS:-4}" --no-control-socket ;;
  reviews) exec python -m services.reviews ;;
  recommendations) exec python -m services.recommendations ;;
  migrate)
    python -m legacy_django migrate --noinput
    python -m legacy_django signing_keys ensure
    exec python -m legacy_django seed --scale "${SEED_SCALE:-large}" ;;
  *) echo "usage: shop gateway|legacy|reviews|recommendations|migrate" >&2; exit 2 ;;
esac
