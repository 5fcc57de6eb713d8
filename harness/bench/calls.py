"""What the burst and the sustained benches share: one checkout as a call, percentiles, the
ratios and their targets, and the time format of visibility queries."""

import statistics
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from temporalio.client import Client

from harness.bench.shop import bench_request
from models.checkout import checkout_workflow_id
from temporal_saga.client import decide
from temporal_saga.models import Outcome
from workflows.checkout import CheckoutWorkflow

# One checkout: places it under this id; True when the answer is CONFIRMED.
Call = Callable[[str], Awaitable[bool]]


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b to three places; None when either is unknown (or b is 0)."""
    return round(a / b, 3) if a is not None and b else None


def meets(value: float, op: str, bound: float) -> bool:
    """Whether a ratio meets its target (`op` is ">=" or "<=")."""
    return value >= bound if op == ">=" else value <= bound


def visibility_time(moment: datetime) -> str:
    """A moment as a visibility query compares it (`StartTime >= '...'`)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def percentiles_ms(seconds: list[float]) -> tuple[float, float, float]:
    """p50, p95, p99 in milliseconds (inclusive method: within the samples' range)."""
    if not seconds:
        return (0.0, 0.0, 0.0)
    if len(seconds) == 1:
        only = round(seconds[0] * 1000, 1)
        return (only, only, only)
    cuts = statistics.quantiles(seconds, n=100, method="inclusive")
    return (round(cuts[49] * 1000, 1), round(cuts[94] * 1000, 1), round(cuts[98] * 1000, 1))


def saga_call(
    client: Client,
    task_queue: str,
    payment_token: str,
    saga: type[CheckoutWorkflow] = CheckoutWorkflow,
) -> Call:
    """The checkout through the engine's client, answered when its decision is."""

    async def call(order_id: str) -> bool:
        decision, _ = await decide(
            client,
            saga,
            bench_request(order_id, payment_token),
            workflow_id=checkout_workflow_id(order_id),
            task_queue=task_queue,
        )
        return decision.status is Outcome.CONFIRMED

    return call
