"""Fault injection for every service: `PUT /admin/fault {"fail": true}` makes every
business endpoint answer 503 (the service is "down"), `{"delay_seconds": 3}` makes each wait
first (the service is "slow"), `{"error_rate": 0.2}` answers a fifth of them 503 (flaky),
`{"hang_seconds": 8, "hang_rate": 0.1}` handles a tenth of them, then holds the answer 8 s
(past the caller's timeout: the work is done, the caller never hears of it and calls again,
which the idempotency keys must answer with the first result); `"paths": ["/charges/"]`
limits any of these to the requests whose path starts with one of them.
`GET /admin/fault/counts` tells how many business requests came and how many faults were
injected. `GET /health`, `/admin/*` and the docs are never affected. State lives in the
process: a restart clears it. Meant for tests, demos and chaos runs on loopback."""

import asyncio
import random

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from models.common import ServiceError
from models.faults import FaultCounts, Faults
from services.errors import error_response

UNAFFECTED_PREFIXES = ("/health", "/admin", "/docs", "/openapi.json", "/redoc")


class _FaultState:
    def __init__(self) -> None:
        self.faults = Faults()
        self.rng = random.Random()
        self.counts = FaultCounts()

    def set(self, faults: Faults) -> None:
        self.faults = faults
        self.rng = random.Random(faults.seed)

    def draw(self, rate: float) -> bool:
        return rate >= 1.0 or (rate > 0.0 and self.rng.random() < rate)


def install_faults(app: FastAPI, service: str) -> None:
    state = _FaultState()

    @app.put("/admin/fault")
    def set_fault(body: Faults) -> Faults:
        state.set(body)
        return body

    @app.get("/admin/fault")
    def get_fault() -> Faults:
        return state.faults

    @app.get("/admin/fault/counts")
    def get_fault_counts() -> FaultCounts:
        return state.counts

    app.add_middleware(FaultInjection, state=state, service=service)


class FaultInjection:
    """Plain ASGI middleware: Starlette's BaseHTTPMiddleware would cost a task and a stream
    per request, on every business call."""

    def __init__(self, app: ASGIApp, state: _FaultState, service: str) -> None:
        self.app = app
        self.state = state
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        if scope["type"] != "http" or path.startswith(UNAFFECTED_PREFIXES):
            return await self.app(scope, receive, send)
        faults, counts = self.state.faults, self.state.counts
        counts.requests += 1
        if faults.paths and not path.startswith(tuple(faults.paths)):
            return await self.app(scope, receive, send)
        if faults.delay_seconds > 0:
            counts.delays += 1
            await asyncio.sleep(faults.delay_seconds)
        if faults.fail or self.state.draw(faults.error_rate):
            counts.errors += 1
            reason = "down" if faults.fail else "flaky"
            error = ServiceError(
                code="service_unavailable", message=f"{self.service} is {reason} (injected fault)"
            )
            return await error_response(503, error)(scope, receive, send)
        if not (faults.hang_seconds > 0 and self.state.draw(faults.hang_rate)):
            return await self.app(scope, receive, send)
        # The work is done; its answer is held past the caller's timeout.
        held: list[Message] = []

        async def hold(message: Message) -> None:
            held.append(message)

        await self.app(scope, receive, hold)
        counts.hangs += 1
        await asyncio.sleep(faults.hang_seconds)
        for message in held:
            await send(message)
