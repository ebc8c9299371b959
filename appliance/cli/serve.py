"""``appliance serve``"""

from __future__ import annotations

import uvicorn

from appliance.api.app import create_app
from appliance.observability.logs import configure_logging
from appliance.settings import Settings


def serve(settings: Settings) -> None:
    configure_logging(as_json=settings.logs_as_json, level=settings.log_level)
    settings.data_path.mkdir(parents=True, exist_ok=True)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        lifespan="on",
        timeout_graceful_shutdown=10,
        server_header=False,
    )
