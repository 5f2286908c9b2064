"""`retain serve`: the HTTP service under uvicorn (uvloop, httptools), several worker processes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from serving.cli.common import console

if TYPE_CHECKING:
    from fastapi import FastAPI


# uvicorn's default is 5 s, the same as httpx's pool: a client reusing a connection just as the
# server closes it gets the connection dropped under its request (seen once in 45,000 soak
# requests). The server must outlast its clients' idle timeout, as nginx's 75 s does.
KEEP_ALIVE_SECONDS = 75


def served_app() -> FastAPI:
    """The app of one worker process of `retain serve` (uvicorn's factory)."""
    from serving.app import create_app

    app = create_app()
    app.state.served = True  # a worker of the service: see scoring.start_service
    return app


def serve(
    host: Annotated[
        str, typer.Option(help="Interface to bind; loopback by default (put a proxy in front).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    workers: Annotated[
        int, typer.Option(min=1, help="Worker processes (each loads the models and caches).")
    ] = 2,
    log_level: Annotated[
        str, typer.Option(help="uvicorn log level: critical, error, warning, info, debug.")
    ] = "info",
    access_log: Annotated[bool, typer.Option(help="Log every request.")] = False,
    keep_alive: Annotated[
        int,
        typer.Option(
            min=1,
            help="Seconds an idle kept-alive connection stays open. Keep it above the idle "
            "timeout of the clients and proxies in front (httpx 5 s, load balancers 60 s).",
        ),
    ] = KEEP_ALIVE_SECONDS,
) -> None:
    """Serve the API: churn scores, offers, at-risk lists, KPIs, ingestion (see docs/api.md)."""
    import uvicorn

    console.print(f"Retain API on http://{host}:{port} with {workers} worker(s); docs at /docs")
    uvicorn.run(
        "serving.cli.serve:served_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http="httptools",
        log_level=log_level,
        access_log=access_log,
        timeout_graceful_shutdown=10,
        timeout_keep_alive=keep_alive,
        # A worker imports pandas, MLflow and the models before its first health check: ~10 s
        # on a busy machine, where uvicorn's 5 s default kills and respawns it for ever.
        timeout_worker_healthcheck=60,
    )


def register(app: typer.Typer) -> None:
    app.command()(serve)
