"""``appliance serve``: the API and web chat, over HTTPS when the settings
name a certificate (with plain HTTP then only redirecting to it)."""

from __future__ import annotations

import asyncio

import uvicorn

from appliance.api.app import create_app
from appliance.api.redirect import https_redirect
from appliance.observability.logs import configure_logging
from appliance.settings import Settings


def server_configs(settings: Settings) -> list[uvicorn.Config]:
    """The appliance's server, and the redirecting one when there is one."""
    common = {"host": settings.host, "log_config": None, "server_header": False}
    tls = (
        {"ssl_certfile": settings.tls_cert_file, "ssl_keyfile": settings.tls_key_file} if settings.tls_cert_file else {}
    )
    configs = [
        uvicorn.Config(
            create_app(settings), port=settings.port, lifespan="on", timeout_graceful_shutdown=10, **tls, **common
        )
    ]
    if settings.http_redirect_port is not None:
        configs.append(
            uvicorn.Config(https_redirect(settings.port), port=settings.http_redirect_port, lifespan="off", **common)
        )
    return configs


async def serve_all(configs: list[uvicorn.Config]) -> None:
    servers = [uvicorn.Server(config) for config in configs]
    tasks = [asyncio.create_task(server.serve()) for server in servers]
    # Each server stops on SIGTERM or SIGINT (uvicorn passes the signal on); when
    # one stops for any reason, so do the others.
    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for server in servers:
        server.should_exit = True
    await asyncio.gather(*tasks)


def serve(settings: Settings) -> None:
    configure_logging(as_json=settings.logs_as_json, level=settings.log_level)
    settings.data_path.mkdir(parents=True, exist_ok=True)
    configs = server_configs(settings)
    # uvicorn's choice of event loop (uvloop where installed).
    with asyncio.Runner(loop_factory=configs[0].get_loop_factory()) as runner:
        runner.run(serve_all(configs))
