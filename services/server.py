"""The main every service runs: its arguments, the token check, telemetry, and uvicorn."""

import argparse
from collections.abc import Callable, Sequence

import uvicorn
from fastapi import FastAPI

from services.auth import MissingSecret, token_from_env
from services.telemetry import observe_service


def serve(make_app: Callable[[str], FastAPI], argv: Sequence[str]) -> None:
    """Main of every service: `--port P --db FILE [--host H]`, then run uvicorn; refuses to
    start without the service token (or another secret the service needs, such as the
    payments service's publishable key: `make_app` reads it before it creates anything)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db", required=True, help="SQLite file, created if missing")
    args = parser.parse_args(argv)
    try:
        token_from_env()  # before anything is created: no token, no service
        app = make_app(args.db)
    except MissingSecret as err:
        parser.exit(2, f"refusing to start: {err}\n")
    tracer_provider = observe_service(app)  # JSON logs; spans if CHECKOUT_TRACING is on
    try:
        # log_config=None: uvicorn's own lines go through the JSON handler too.
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning", log_config=None)
    finally:
        if tracer_provider is not None:
            tracer_provider.shutdown()  # send the last spans
