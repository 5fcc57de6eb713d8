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

from models.checkout import CartItem, CheckoutRequest, CheckoutResult, checkout_workflow_id
from models.payments import CARD_OK
from starter.payment_methods import CardTokens
from temporal_saga import SagaEnded
from temporal_saga.client import decide
from temporal_saga.models import Outcome
from workflows.checkout import CheckoutWorkflow


async def decide_checkout(
    client: Client, request: CheckoutRequest, task_queue: str
) -> tuple[CheckoutResult, WorkflowHandle[Any, CheckoutResult]]:
    """Start the checkout for this order and return its decision as soon as it is known
    (update-with-start, temporal_saga.client.decide). The workflow id is the order's: a
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


def demo_scenarios(run_id: str, cards: CardTokens) -> list[Scenario]:
    """`cards`: the test cards' tokens from the stack's payments service."""

    def request(
        n: int, token: str, *items: tuple[str, int], expected_total_cents: int | None = None
    ) -> CheckoutRequest:
        return CheckoutRequest(
            order_id=f"{run_id}-{n}",
            customer_id=f"customer-{n % 3}",
            email=f"customer{n % 3}@example.com",
            payment_token=token,
            items=[CartItem(sku=s, quantity=q) for s, q in items],
            expected_total_cents=expected_total_cents,
        )

    scenarios = [
        # The customer saw 2 x 12.50 EUR, the shop's price (services.orders.pricing).
        Scenario("confirmed", request(1, cards.ok, ("MUG-BLUE", 2), expected_total_cents=2500)),
        Scenario("confirmed", request(2, cards.ok, ("TEE-M", 1), ("POSTER-A2", 1))),
        Scenario("payments 503 twice, retried", request(3, cards.flaky, ("MUG-BLUE", 1))),
        Scenario("out of stock", request(4, cards.ok, ("VINYL-SOLDOUT", 1))),
        Scenario("card declined", request(5, cards.declined, ("TEE-M", 2))),
        # The cart showed an old price: refused before anything is written or charged.
        Scenario("price changed", request(6, cards.ok, ("POSTER-A2", 1), expected_total_cents=800)),
    ]
    try:
        CheckoutRequest.model_validate(
            {
                "order_id": f"{run_id}-7",
                "customer_id": "customer-0",
                "email": "not-an-email",
                # A card number where the token goes, and a price from the customer: both
                # refused (tokenize first; the shop sets prices).
                "payment_token": CARD_OK,
                "items": [{"sku": "MUG-BLUE", "quantity": 0, "unit_price_cents": 1}],
            }
        )
    except ValidationError as err:
        scenarios.append(Scenario("invalid input", None, describe_validation_error(err)))
    return scenarios


def random_request(rng: random.Random, order_id: str, cards: CardTokens) -> CheckoutRequest:
    """A checkout from a weighted mix: mostly good, some declined, some out of stock.
    `cards`: the test cards' tokens."""
    token = rng.choices([cards.ok, cards.flaky, cards.declined], weights=[80, 10, 10])[0]
    catalogue = ["MUG-BLUE", "TEE-M", "POSTER-A2", "VINYL-SOLDOUT"]
    picks = rng.sample(catalogue, k=rng.choice([1, 1, 2]))
    if rng.random() > 0.1:
        picks = [p for p in picks if p != "VINYL-SOLDOUT"] or [catalogue[0]]
    customer = rng.randrange(20)
    return CheckoutRequest(
        order_id=order_id,
        customer_id=f"customer-{customer}",
        email=f"customer{customer}@example.com",
        payment_token=token,
        items=[CartItem(sku=sku, quantity=rng.randint(1, 3)) for sku in picks],
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
            except SagaEnded as err:
                outcomes[err.run_status.value] += 1
                errors.append(str(err))
            finally:
                on_done()

    started = time.monotonic()
    await asyncio.gather(*(one(r) for r in requests))
    return BatchSummary(len(requests), time.monotonic() - started, outcomes, errors)
