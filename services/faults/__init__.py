"""Fault injection for every service: `PUT /admin/fault {"fail": true}` makes every
business endpoint answer 503 (the service is "down"), `{"delay_seconds": 3}` makes each wait
first (the service is "slow"); `"paths": ["/charges/"]` limits either to the requests whose
path starts with one of them. `GET /health`, `/admin/*` and the docs are never affected.
State lives in the process: a restart clears it. Meant for tests and demos on loopback."""

import asyncio

from fastapi import FastAPI, Request, Response
from starlette.middleware.base import RequestResponseEndpoint

from models.common import ServiceError
from models.faults import Faults
from services.common import error_response

UNAFFECTED_PREFIXES = ("/health", "/admin", "/docs", "/openapi.json", "/redoc")


def install_faults(app: FastAPI, service: str) -> None:
    current: list[Faults] = [Faults()]

    @app.put("/admin/fault")
    def set_fault(body: Faults) -> Faults:
        current[0] = body
        return body

    @app.get("/admin/fault")
    def get_fault() -> Faults:
        return current[0]

    @app.middleware("http")
    async def inject(request: Request, call_next: RequestResponseEndpoint) -> Response:
        if request.url.path.startswith(UNAFFECTED_PREFIXES):
            return await call_next(request)
        faults = current[0]
        if faults.paths and not request.url.path.startswith(tuple(faults.paths)):
            return await call_next(request)
        if faults.delay_seconds > 0:
            await asyncio.sleep(faults.delay_seconds)
        if faults.fail:
            error = ServiceError(
                code="service_unavailable", message=f"{service} is down (injected fault)"
            )
            return error_response(503, error)
        return await call_next(request)
