"""`python -m harness.bench.dbos_app --port P --database-url URL`: the DBOS checkout in a
process of its own, behind a small HTTP API, until SIGINT/SIGTERM.

DBOS runs as a library in its caller's process (harness/bench/dbos_checkout.py). The sustained bench
(harness/bench/sustained.py) runs it here, so that the load generator calls it as it calls Temporal,
from another process, and each one's CPU is its own: this process is DBOS's "worker", as the
checkout worker is Temporal's. The services' URLs come from CHECKOUT_<NAME>_URL and their
token from CHECKOUT_SERVICE_TOKEN, as for a worker (stack.launcher.worker_env).

- `POST /checkout` `{"order_id", "payment_token"}`: the bench's checkout (harness/bench/shop.py) of
  that order; answers `{"status": "CONFIRMED"}` (or REJECTED) once decided.
- `GET /in-flight`: `{"in_flight": true}` while any workflow (checkout or consumer) is not done.
- `GET /closed?since=ISO`: `{"closed": n}`, the checkouts started since then that have ended.
- `GET /backlog`: `{"age_seconds": s}`, how long the oldest unfinished consumer workflow (the
  work after an answer) has existed; 0 when there is none.
- `GET /health`: 200 once DBOS is launched.
"""

import argparse
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Sequence

from aiohttp import web
from dbos import DBOS

from harness.bench.dbos_checkout import (
    CHECKOUT_WORKFLOW,
    CONSUMER_WORKFLOW,
    IN_FLIGHT,
    dbos_decide,
    running_dbos,
)
from harness.bench.dbos_checkout import (
    in_flight as dbos_in_flight,
)
from harness.bench.service_calls import SHOP_SERVICES
from harness.bench.shop import bench_request
from services.auth import headers_from_env

DATABASE_URL = web.AppKey("database_url", str)
log = logging.getLogger(__name__)


async def checkout(request: web.Request) -> web.Response:
    body = await request.json()
    try:
        outcome = await dbos_decide(bench_request(body["order_id"], body["payment_token"]))
    except Exception as err:  # the caller counts it as an error, with these words
        log.warning("checkout %s: %s", body.get("order_id"), err)
        return web.json_response({"error": f"{type(err).__name__}: {err}"}, status=500)
    return web.json_response({"status": outcome.value})


async def in_flight(request: web.Request) -> web.Response:
    return web.json_response({"in_flight": await dbos_in_flight()})


async def closed(request: web.Request) -> web.Response:
    ended = await DBOS.list_workflows_async(
        name=CHECKOUT_WORKFLOW,
        status=["SUCCESS", "ERROR", "CANCELLED"],
        start_time=request.query["since"],
        load_input=False,
        load_output=False,
    )
    return web.json_response({"closed": len(ended)})


async def backlog(request: web.Request) -> web.Response:
    oldest = await DBOS.list_workflows_async(
        name=CONSUMER_WORKFLOW,
        status=IN_FLIGHT,
        limit=1,
        sort_desc=False,
        load_input=False,
        load_output=False,
    )
    created = oldest[0].created_at if oldest else None
    age = 0.0 if created is None else max(0.0, time.time() - created / 1000)
    return web.json_response({"age_seconds": round(age, 3)})


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def service_urls(env: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ) if env is None else env
    return {name: env[f"CHECKOUT_{name.upper()}_URL"] for name in SHOP_SERVICES}


def make_app(database_url: str) -> web.Application:
    app = web.Application()
    app[DATABASE_URL] = database_url

    async def dbos_running(app: web.Application) -> AsyncIterator[None]:
        async with running_dbos(app[DATABASE_URL], service_urls(), headers_from_env()):
            yield

    app.cleanup_ctx.append(dbos_running)
    app.add_routes(
        [
            web.post("/checkout", checkout),
            web.get("/in-flight", in_flight),
            web.get("/closed", closed),
            web.get("/backlog", backlog),
            web.get("/health", health),
        ]
    )
    return app


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m harness.bench.dbos_app", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database-url", required=True, help="DBOS's system database")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # No access log: a line per checkout would cost this process more than the call.
    web.run_app(
        make_app(args.database_url),
        host="127.0.0.1",
        port=args.port,
        access_log=None,
        print=None,
    )
    sys.stdout.flush()
    # DBOS's threads may outlive the loop (temporalio's processes do likewise, sdk-python #300).
    os._exit(0)


if __name__ == "__main__":
    main()
