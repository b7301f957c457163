#!/bin/sh
# Container entry point: `shop gateway|legacy|reviews|recommendations|payments [reconcile]|simulator ARGS|migrate`,
# and the catalog (ADR 0018): `shop catalog|relay|consume catalog`.
set -eu
case "${1:-gateway}" in
  gateway) exec gateway ;;
  legacy)
    exec gunicorn legacy_django.config.wsgi:application --bind "0.0.0.0:${LEGACY_PORT:-8001}" \
      --worker-class gthread --workers "${LEGACY_WORKERS:-2}" --threads "${LEGACY_THREADS:-4}" --no-control-socket ;;
  reviews) exec python -m services.reviews ;;
  recommendations) exec python -m services.recommendations ;;
  payments) shift; exec python -m services.payments "$@" ;;
  simulator) shift; exec python -m services.payments.simulator "$@" ;;
  catalog) exec python -m services.catalog ;;
  relay) exec python -m events relay ;;
  consume) shift; exec python -m events consume "$@" ;;
  migrate)
    python -m legacy_django migrate --noinput
    python -m legacy_django signing_keys ensure
    python -m legacy_django seed --scale "${SEED_SCALE:-large}"
    exec python -m services.catalog rebuild --once ;;
  *) echo "usage: shop gateway|legacy|reviews|recommendations|payments [reconcile]|simulator ARGS|catalog|relay|consume GROUP|migrate" >&2; exit 2 ;;
esac
