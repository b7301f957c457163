"""``gateway`` / ``python -m gateway``: serve the gateway alone, configured by the environment."""

from __future__ import annotations

import logging
import sys

import uvicorn

from gateway.settings import SettingsError, load_settings


def main() -> None:
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        sys.exit(2)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    uvicorn.run(
        "gateway.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        server_header=False,
        # The gateway sets X-Forwarded-* itself; never trust a client's.
        proxy_headers=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
