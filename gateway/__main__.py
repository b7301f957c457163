"""``gateway`` / ``python -m gateway``: serve the gateway alone, configured by the environment."""

from __future__ import annotations

import copy
import sys
from typing import Any

import uvicorn
from uvicorn.config import LOGGING_CONFIG

from gateway.settings import SettingsError, load_settings


def log_config() -> dict[str, Any]:
    """uvicorn's logging plus ours: the gateway's JSON lines (one per request) on stderr, in every worker.

    Passed to uvicorn rather than set up here, because each worker process configures logging anew.
    """
    config = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"]["line"] = {"format": "%(message)s"}
    config["handlers"]["gateway"] = {
        "class": "logging.StreamHandler",
        "formatter": "line",
        "stream": "ext://sys.stderr",
    }
    config["loggers"]["gateway"] = {"handlers": ["gateway"], "level": "INFO", "propagate": False}
    return config


def main() -> None:
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        sys.exit(2)
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
        log_config=log_config(),
    )


if __name__ == "__main__":
    main()
