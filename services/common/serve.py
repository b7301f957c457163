"""Run a service under uvicorn with the production event loop and HTTP parser."""

import uvicorn

from services.common.settings import load_settings


def serve(name: str) -> None:
    settings = load_settings(name)
    uvicorn.run(
        f"services.{name}.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level=settings.log_level,
    )
