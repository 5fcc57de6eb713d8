"""The bench's DBOS peer (harness/bench/dbos_checkout.py) end to end: its own Postgres
(harness/bench/postgres.py) and the real services, checked in the services' own records as
tests/e2e/test_checkout_e2e.py does.

Needs Debian's `postgresql` (.ci/run installs it): skipped without it, except on CI.
"""

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from dbos import DBOS

from harness.bench.dbos_checkout import (
    CONFIRMED_CONSUMERS,
    announce,
    checkout_workflow_id,
    dbos_decision,
    dbos_result,
    failed_workflows,
    running_dbos,
    wait_all_done,
)
from harness.bench.postgres import Postgres, PostgresUnavailable, postgres_bin_dir, running_postgres
from models.checkout import CartItem, CheckoutRequest
from models.events import OrderConfirmed
from models.orders import Order
from models.payments import CARD_DECLINED, CARD_FLAKY, CARD_OK
from services.auth import headers_from_env
from temporal_saga.models import Outcome
from tests.support.cards import card_token
from tests.support.stock import new_stocked_sku

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]
# The work after an answer (commit, four consumers) takes well under a second: the bound
# only turns a hang into a failure.
ALL_DONE_SECONDS = 30.0


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    try:
        postgres_bin_dir()
    except PostgresUnavailable as err:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(err))
    with running_postgres() as server:
        yield server


@pytest.fixture(scope="module")
async def dbos(postgres: Postgres, services: dict[str, str]) -> AsyncIterator[None]:
    async with running_dbos(postgres.url_for("checkout_dbos_tests"), services, headers_from_env()):
        yield


class Records:
    """The services' own records, read over their HTTP APIs."""

    def __init__(self, urls: dict[str, str]) -> None:
        self.urls = urls

    async def get(self, service: str, path: str) -> Any:
        async with httpx.AsyncClient(headers=headers_from_env(), timeout=5) as http:
            response = await http.get(self.urls[service] + path)
            response.raise_for_status()
            return response.json()

    async def level(self, sku: str) -> dict[str, int]:
        level = await self.get("inventory", f"/stock/{sku}")
        return {key: level[key] for key in ("available", "reserved", "committed")}


def request_for(
    services: dict[str, str], card: str, sku: str, quantity: int = 1
) -> CheckoutRequest:
    return CheckoutRequest(
        order_id=f"dbos-{uuid.uuid4().hex[:10]}",
        customer_id=f"cust-{uuid.uuid4().hex[:8]}",
        email="dbos@example.com",
        payment_token=card_token(services["payments"], card),
        items=[CartItem(sku=sku, quantity=quantity)],
    )


@pytest.mark.usefixtures("dbos")
async def test_confirmed_checkout_commits_charges_once_and_fans_out_once(
    services: dict[str, str],
) -> None:
    records = Records(services)
    sku = new_stocked_sku(services, "DBOS", available=5, unit_price_cents=1500)
    request = request_for(services, CARD_OK, sku, quantity=2)
    workflow_id = checkout_workflow_id(request.order_id)
    event_id = f"{workflow_id}:OrderConfirmed"

    decision = await dbos_decision(request)
    assert decision.status is Outcome.CONFIRMED
    assert decision.steps_done == [
        "create_order",
        "reserve_stock",
        "charge_payment",
        "confirm_order",
    ]
    await wait_all_done(ALL_DONE_SECONDS)
    # The same order again, and its event announced again: nothing runs twice.
    assert (await dbos_decision(request)).status is Outcome.CONFIRMED
    order = Order.model_validate(await records.get("orders", f"/orders/{request.order_id}"))
    again = OrderConfirmed.from_checkout(
        request, order, workflow_id=workflow_id, occurred_at=datetime.now(UTC)
    )
    await announce(again, CONFIRMED_CONSUMERS)
    await wait_all_done(ALL_DONE_SECONDS)

    assert (await dbos_result(request.order_id)).status is Outcome.CONFIRMED
    assert (await records.get("orders", f"/orders/{request.order_id}"))["status"] == "CONFIRMED"
    assert await records.level(sku) == {"available": 3, "reserved": 0, "committed": 2}
    reservation = await records.get("inventory", f"/reservations/{workflow_id}:reserve_stock")
    assert reservation["status"] == "COMMITTED"
    charges = await records.get("payments", f"/charges?order_id={request.order_id}")
    assert [(c["charge_id"], c["status"], c["amount_cents"]) for c in charges] == [
        (f"{workflow_id}:charge_payment", "SUCCEEDED", 3000)
    ]
    emails = await records.get("email", f"/emails?order_id={request.order_id}")
    assert [mail["email_id"] for mail in emails] == [event_id]
    shipments = await records.get("warehouse", f"/shipments?order_id={request.order_id}")
    assert [(s["event_id"], s["lines"]) for s in shipments] == [
        (event_id, [{"sku": sku, "quantity": 2}])
    ]
    ledger = await records.get("loyalty", f"/ledger?customer_id={request.customer_id}")
    assert [(entry["entry_id"], entry["points"]) for entry in ledger] == [(event_id, 30)]
    events = await records.get("analytics", f"/events?order_id={request.order_id}")
    assert [(e["event_id"], e["event_type"]) for e in events] == [(event_id, "OrderConfirmed")]
    consumers = await DBOS.list_workflows_async(
        workflow_id_prefix=f"{event_id}:", load_input=False, load_output=False
    )
    assert sorted(status.workflow_id.rsplit(":", 1)[1] for status in consumers) == [
        "analytics",
        "loyalty",
        "receipt",
        "shipping",
    ]
    assert await failed_workflows() == []


@pytest.mark.usefixtures("dbos")
async def test_declined_card_is_compensated_nothing_charged(services: dict[str, str]) -> None:
    records = Records(services)
    sku = new_stocked_sku(services, "DBOS", available=4, unit_price_cents=1500)
    request = request_for(services, CARD_DECLINED, sku, quantity=3)
    workflow_id = checkout_workflow_id(request.order_id)

    decision = await dbos_decision(request)
    assert decision.status is Outcome.REJECTED
    assert decision.failed_step is not None and decision.failed_step.value == "charge_payment"
    assert decision.reason_code == "card_declined"
    result = await dbos_result(request.order_id)
    assert result.compensations_done == ["refund_payment", "release_stock", "cancel_order"]
    await wait_all_done(ALL_DONE_SECONDS)

    order = await records.get("orders", f"/orders/{request.order_id}")
    assert (order["status"], order["cancel_reason"]) == (
        "CANCELLED",
        "charge_payment failed: card_declined",
    )
    assert await records.level(sku) == {"available": 4, "reserved": 0, "committed": 0}
    reservation = await records.get("inventory", f"/reservations/{workflow_id}:reserve_stock")
    assert reservation["status"] == "RELEASED"
    charges = await records.get("payments", f"/charges?order_id={request.order_id}")
    assert [c["status"] for c in charges] == ["DECLINED"]
    # A rejection reaches analytics alone: no receipt, no shipment, no points.
    assert await records.get("email", f"/emails?order_id={request.order_id}") == []
    assert await records.get("warehouse", f"/shipments?order_id={request.order_id}") == []
    events = await records.get("analytics", f"/events?order_id={request.order_id}")
    assert [e["event_type"] for e in events] == ["OrderRejected"]


@pytest.mark.usefixtures("dbos")
async def test_transient_503s_are_retried_by_the_step_with_one_charge(
    services: dict[str, str],
) -> None:
    """The session's payments service answers 503 to a flaky card's first two attempts."""
    records = Records(services)
    sku = new_stocked_sku(services, "DBOS", available=2, unit_price_cents=1500)
    request = request_for(services, CARD_FLAKY, sku)

    assert (await dbos_decision(request)).status is Outcome.CONFIRMED
    await wait_all_done(ALL_DONE_SECONDS)

    charges = await records.get("payments", f"/charges?order_id={request.order_id}")
    assert [c["status"] for c in charges] == ["SUCCEEDED"]
