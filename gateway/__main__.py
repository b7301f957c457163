"""``gateway`` / ``python -m gateway``: serve the gateway alone, configured by the environment.

``gateway candidates [--since 1h] [--json]``: the legacy endpoints that cost legacy most, from the
running gateway's admin API (gateway/candidates.py).
"""

from __future__ import annotations

import asyncio
import copy
import functools
import os
import sys
from typing import Any, cast

import uvicorn
from uvicorn.config import LOGGING_CONFIG

from gateway import http1
from gateway.http_limits import HttpLimits
from gateway.metrics import shared_figures_env
from gateway.server import GatewayHttpProtocol
from gateway.settings import SettingsError, load_settings


def log_config() -> dict[str, Any]:
    """uvicorn's logging plus the ``gateway`` loggers' warnings (JWKS refresh, overrides, start-up) as
    plain lines on stderr, in every worker. The per-request access log does not go through ``logging``:
    ``gateway.accesslog`` writes its JSON lines to stderr itself, in batches.

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
    if sys.argv[1:2] == ["candidates"]:
        from gateway.candidates import cli

        sys.exit(cli(sys.argv[2:]))
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        sys.exit(2)
    if settings.workers > 1:
        # Every worker adds to the same figures (metrics, live stats): one scrape sees the whole gateway.
        os.environ.update(shared_figures_env(settings.var_dir / f"gateway-{settings.port}"))
    if settings.server == "native":
        # The gateway's own HTTP/1.1 server (gateway/http1.py, docs/adr/0020-gateway-server-layer.md).
        http1.serve(settings.host, settings.port, settings.workers, log_config())
        return
    uvicorn.run(
        "gateway.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        # uvicorn's httptools protocol plus head limits, timeouts and a connection cap (gateway/server.py).
        # uvicorn calls whatever it is given with (config, server_state, app_state, _loop); the partial is
        # pickled to each spawned worker with its limits, so every worker enforces the same ones.
        http=cast(
            type[asyncio.Protocol],
            functools.partial(GatewayHttpProtocol, limits=HttpLimits.from_settings(settings)),
        ),
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
