"""Placing checkouts: one, a demo mix, or many, and reading their outcomes."""

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle

from models.checkout import CartItem, CheckoutRequest, CheckoutResult
from models.payments import CARD_DECLINED, CARD_FLAKY, CARD_OK
from models.saga import Outcome
from worker.clients import connect_temporal
from workflows.checkout import CheckoutWorkflow, checkout_workflow_id
from workflows.saga.client import decide


async def decide_checkout(
    client: Client, request: CheckoutRequest, task_queue: str
) -> tuple[CheckoutResult, WorkflowHandle[Any, CheckoutResult]]:
    """Start the checkout for this order and return its decision as soon as it is known
    (update-with-start, workflows.saga.client.decide). The workflow id is the order's: a
    repeat of the same order joins the running checkout, or gets the answer of the finished
    one; it never runs a second time."""
    return await decide(
        client,
        CheckoutWorkflow,
        request,
        workflow_id=checkout_workflow_id(request.order_id),
        task_queue=task_queue,
    )


async def place_checkout(
    client: Client, request: CheckoutRequest, task_queue: str
) -> CheckoutResult:
    """Run the checkout for this order to its end (compensations included); its result."""
    _decision, handle = await decide_checkout(client, request, task_queue)
    return await handle.result()


async def checkout_handle(order_id: str) -> WorkflowHandle[CheckoutWorkflow, CheckoutResult]:
    """The checkout of an order, on the cluster the environment/profile names."""
    client = await connect_temporal()
    return client.get_workflow_handle_for(CheckoutWorkflow.run, checkout_workflow_id(order_id))


@dataclass(frozen=True)
class Scenario:
    label: str
    # None when the request is refused before anything starts; the text says why.
    request: CheckoutRequest | None
    invalid: str | None = None


def describe_validation_error(err: ValidationError) -> str:
    """One line per bad field: where and why. Never the input (it may be a card number)."""
    lines = []
    for error in err.errors():
        where = ".".join(str(part) for part in error["loc"]) or "request"
        lines.append(f"{where}: {error['msg'].removeprefix('Value error, ')}")
    return "; ".join(lines)


def demo_scenarios(run_id: str) -> list[Scenario]:
    def request(n: int, card: str, *items: tuple[str, int, int]) -> CheckoutRequest:
        return CheckoutRequest(
            order_id=f"{run_id}-{n}",
            customer_id=f"customer-{n % 3}",
            email=f"customer{n % 3}@example.com",
            card_number=card,
            items=[CartItem(sku=s, quantity=q, unit_price_cents=p) for s, q, p in items],
        )

    scenarios = [
        Scenario("confirmed", request(1, CARD_OK, ("MUG-BLUE", 2, 1250))),
        Scenario("confirmed", request(2, CARD_OK, ("TEE-M", 1, 2000), ("POSTER-A2", 1, 900))),
        Scenario("payments 503 twice, retried", request(3, CARD_FLAKY, ("MUG-BLUE", 1, 1250))),
        Scenario("out of stock", request(4, CARD_OK, ("VINYL-SOLDOUT", 1, 3500))),
        Scenario("card declined", request(5, CARD_DECLINED, ("TEE-M", 2, 2000))),
    ]
    try:
        CheckoutRequest.model_validate(
            {
                "order_id": f"{run_id}-6",
                "customer_id": "customer-0",
                "email": "not-an-email",
                "card_number": CARD_OK,
                "items": [{"sku": "MUG-BLUE", "quantity": 0, "unit_price_cents": 1250}],
            }
        )
    except ValidationError as err:
        scenarios.append(Scenario("invalid input", None, describe_validation_error(err)))
    return scenarios


def random_request(rng: random.Random, order_id: str) -> CheckoutRequest:
    """A checkout from a weighted mix: mostly good, some declined, some out of stock."""
    card = rng.choices([CARD_OK, CARD_FLAKY, CARD_DECLINED], weights=[80, 10, 10])[0]
    catalogue = [("MUG-BLUE", 1250), ("TEE-M", 2000), ("POSTER-A2", 900), ("VINYL-SOLDOUT", 3500)]
    picks = rng.sample(catalogue, k=rng.choice([1, 1, 2]))
    if rng.random() > 0.1:
        picks = [p for p in picks if p[0] != "VINYL-SOLDOUT"] or [catalogue[0]]
    customer = rng.randrange(20)
    return CheckoutRequest(
        order_id=order_id,
        customer_id=f"customer-{customer}",
        email=f"customer{customer}@example.com",
        card_number=card,
        items=[CartItem(sku=s, quantity=rng.randint(1, 3), unit_price_cents=p) for s, p in picks],
    )


def outcome_label(result: CheckoutResult) -> str:
    if result.status is Outcome.CONFIRMED:
        return "CONFIRMED"
    return f"REJECTED:{result.reason_code}"


@dataclass
class BatchSummary:
    count: int
    seconds: float
    outcomes: Counter[str]
    errors: list[str]


async def place_many(
    client: Client,
    requests: list[CheckoutRequest],
    task_queue: str,
    concurrency: int,
    on_done: Callable[[], None] = lambda: None,
) -> BatchSummary:
    """Place every request, at most `concurrency` at once; errors are counted, not raised."""
    gate = asyncio.Semaphore(concurrency)
    outcomes: Counter[str] = Counter()
    errors: list[str] = []

    async def one(request: CheckoutRequest) -> None:
        async with gate:
            try:
                outcomes[outcome_label(await place_checkout(client, request, task_queue))] += 1
            except WorkflowFailureError as err:
                outcomes["FAILED"] += 1
                errors.append(f"{request.order_id}: {err.cause}")
            finally:
                on_done()

    started = time.monotonic()
    await asyncio.gather(*(one(r) for r in requests))
    return BatchSummary(len(requests), time.monotonic() - started, outcomes, errors)
