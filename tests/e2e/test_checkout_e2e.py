"""The checkout end to end: dev server, real services, the real worker's code.

Each test gives its SKUs their own stock and price (PUT /stock/{sku}, PUT /prices/{sku}) so
tests don't share state, and checks the outcome in each service's own records, not only in
the workflow's answer.
"""

import asyncio
import json
import uuid

import httpx
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from harness.bench.checkout_activities import CheckoutActivitiesWorkflow
from models.checkout import CheckoutRequest, CheckoutResult, checkout_workflow_id
from models.payments import CARD_DECLINED, CARD_FLAKY, CARD_OK
from starter.checkouts import place_checkout
from temporal_saga.client import decide
from temporal_saga.models import Outcome
from tests.support.cli import run_cli
from tests.support.shop import Shop
from worker.settings import Settings
from workflows.checkout import CheckoutWorkflow

pytestmark = pytest.mark.usefixtures("checkout_worker")


@pytest.fixture
def shop(services: dict[str, str]) -> Shop:
    return Shop(services)


async def place(
    env: WorkflowEnvironment, settings: Settings, request: CheckoutRequest
) -> CheckoutResult:
    return await place_checkout(env.client, request, settings.task_queue)


async def test_confirmed_checkout(
    dev_env: WorkflowEnvironment, checkout_settings: Settings, shop: Shop
) -> None:
    mug, tee = shop.new_sku(10, 1250), shop.new_sku(5, 2000)
    request = shop.request(CARD_OK, (mug, 2), (tee, 1), expected_total_cents=4500)

    result = await place(dev_env, checkout_settings, request)

    assert result.status is Outcome.CONFIRMED
    assert result.total_cents == 4500
    assert result.steps_done == ["create_order", "reserve_stock", "charge_payment", "confirm_order"]
    assert result.compensations_done == []
    assert shop.order_status(request.order_id) == "CONFIRMED"
    assert shop.level(mug) | {"name": ""} == {
        "sku": mug,
        "name": "",
        "available": 8,
        "reserved": 0,
        "committed": 2,
    }
    assert shop.level(tee)["available"] == 4
    charges = shop.charges(request.order_id)
    assert [(c["status"], c["amount_cents"]) for c in charges] == [("SUCCEEDED", 4500)]
    assert charges[0]["card_last4"] == "4242"


async def test_out_of_stock_cancels_order_and_charges_nothing(
    dev_env: WorkflowEnvironment, checkout_settings: Settings, shop: Shop
) -> None:
    plenty, scarce = shop.new_sku(10, 500), shop.new_sku(1, 700)
    request = shop.request(CARD_OK, (plenty, 3), (scarce, 2))

    result = await place(dev_env, checkout_settings, request)

    assert result.status is Outcome.REJECTED
    assert result.failed_step is not None and result.failed_step.value == "reserve_stock"
    assert result.reason_code == "out_of_stock"
    assert result.reason is not None and scarce in result.reason
    assert result.compensations_done == ["release_stock", "cancel_order"]
    assert shop.order_status(request.order_id) == "CANCELLED"
    assert shop.charges(request.order_id) == []
    assert shop.level(plenty)["available"] == 10
    assert shop.level(scarce)["available"] == 1
    assert shop.level(plenty)["reserved"] == 0


async def test_declined_card_releases_stock_and_cancels_order(
    dev_env: WorkflowEnvironment, checkout_settings: Settings, shop: Shop
) -> None:
    sku = shop.new_sku(4, 999)
    request = shop.request(CARD_DECLINED, (sku, 3))

    result = await place(dev_env, checkout_settings, request)

    assert result.status is Outcome.REJECTED
    assert result.failed_step is not None and result.failed_step.value == "charge_payment"
    assert result.reason_code == "card_declined"
    assert result.compensations_done == ["refund_payment", "release_stock", "cancel_order"]
    assert shop.order_status(request.order_id) == "CANCELLED"
    assert shop.level(sku) | {"name": ""} == {
        "sku": sku,
        "name": "",
        "available": 4,
        "reserved": 0,
        "committed": 0,
    }
    reservations = shop.get("inventory", "/reservations")
    mine = [r for r in reservations if r["order_id"] == request.order_id]
    assert [r["status"] for r in mine] == ["RELEASED"]
    assert [c["status"] for c in shop.charges(request.order_id)] == ["DECLINED"]


async def test_prices_are_the_shops_and_refusals_at_create_charge_nothing(
    dev_env: WorkflowEnvironment, checkout_settings: Settings, shop: Shop
) -> None:
    """The charge is the order's total at the shop's prices; a cart showing another total, a
    SKU the shop does not sell and a currency it does not sell in are refused when the order
    is created: no stock held, nothing charged."""
    sku = shop.new_sku(5, 1999)
    priced = shop.request(CARD_OK, (sku, 2), currency="USD")
    refused = {
        "price_changed": shop.request(CARD_OK, (sku, 2), expected_total_cents=2 * 1999 - 1),
        "unknown_sku": shop.request(CARD_OK, (sku, 1), ("NOT-SOLD-HERE", 1)),
        "currency_not_sold": shop.request(CARD_OK, (sku, 1), currency="XYZ"),
    }

    result = await place(dev_env, checkout_settings, priced)
    outcomes = {code: await place(dev_env, checkout_settings, r) for code, r in refused.items()}

    assert (result.status, result.total_cents, result.currency) == (
        Outcome.CONFIRMED,
        3998,
        "USD",
    )
    order = shop.get("orders", f"/orders/{priced.order_id}")
    assert order["lines"] == [{"sku": sku, "quantity": 2, "unit_price_cents": 1999}]
    assert [(c["amount_cents"], c["currency"]) for c in shop.charges(priced.order_id)] == [
        (3998, "USD")
    ]
    for code, outcome in outcomes.items():
        assert outcome.status is Outcome.REJECTED, code
        assert (outcome.failed_step, outcome.reason_code) == ("create_order", code)
        assert outcome.total_cents == 0
        assert outcome.steps_done == []
        assert shop.charges(refused[code].order_id) == []
        # Only the compensation's tombstone: an order id, cancelled, never priced.
        assert shop.get("orders", f"/orders/{refused[code].order_id}")["lines"] == []
    assert outcomes["price_changed"].reason is not None
    assert "the total is now 39.98 EUR, not 39.97 EUR" in outcomes["price_changed"].reason
    assert shop.level(sku)["available"] == 5 - 2  # only the confirmed order took stock


@pytest.mark.parametrize(
    "saga", [CheckoutWorkflow, CheckoutActivitiesWorkflow], ids=["local-steps", "activity-steps"]
)
async def test_transient_503s_are_retried_then_confirmed_with_one_charge(
    dev_env: WorkflowEnvironment,
    checkout_settings: Settings,
    shop: Shop,
    saga: type[CheckoutWorkflow],
) -> None:
    sku = shop.new_sku(3, 1500)
    request = shop.request(CARD_FLAKY, (sku, 1))
    workflow_id = checkout_workflow_id(request.order_id)

    _, handle = await decide(
        dev_env.client,
        saga,
        request,
        workflow_id=workflow_id,
        task_queue=checkout_settings.task_queue,
    )
    result = await handle.result()

    assert result.status is Outcome.CONFIRMED
    charges = shop.charges(request.order_id)
    assert [(c["status"], c["amount_cents"]) for c in charges] == [("SUCCEEDED", 1500)]
    handle = dev_env.client.get_workflow_handle(checkout_workflow_id(request.order_id))
    await handle.result()
    events = (await handle.fetch_history()).events
    activities = {
        e.event_id: e.activity_task_scheduled_event_attributes.activity_type.name
        for e in events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    }
    attempts = {
        activities[e.activity_task_started_event_attributes.scheduled_event_id]: (
            e.activity_task_started_event_attributes.attempt
        )
        for e in events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
    }
    if saga is CheckoutWorkflow:
        # 503 on both local tries; the charge continued as an activity, which succeeded at
        # once. The other steps stayed local.
        assert attempts["charge_payment"] == 1
        assert not {"create_order", "reserve_stock", "confirm_order"} & attempts.keys()
    else:
        # The payments service answered 503 twice: the charge succeeded on attempt 3.
        assert attempts["charge_payment"] == 3


async def test_same_order_started_twice_runs_once(
    dev_env: WorkflowEnvironment, checkout_settings: Settings, shop: Shop
) -> None:
    sku = shop.new_sku(10, 100)
    request = shop.request(CARD_OK, (sku, 2))

    first, second = await asyncio.gather(
        place(dev_env, checkout_settings, request), place(dev_env, checkout_settings, request)
    )
    again = await place(dev_env, checkout_settings, request)

    assert first == second == again
    assert first.status is Outcome.CONFIRMED
    assert len(shop.charges(request.order_id)) == 1
    assert shop.level(sku)["available"] == 8
    runs = [
        wf
        async for wf in dev_env.client.list_workflows(
            f"WorkflowId = '{checkout_workflow_id(request.order_id)}'"
        )
    ]
    assert len(runs) == 1


async def test_invalid_input_names_the_field_and_writes_nothing(
    dev_env: WorkflowEnvironment, checkout_settings: Settings, shop: Shop
) -> None:
    sku = shop.new_sku(5, 100)
    order_id = f"e2e-invalid-{uuid.uuid4().hex[:6]}"
    cases = {
        "items.0.quantity": ["--item", f"{sku}:0", "--email", "a@example.com"],
        "email": ["--item", f"{sku}:1", "--email", "not-an-email"],
        "card_number": ["--item", f"{sku}:1", "--email", "a@example.com", "--card", "4242"],
        "items.0.sku": ["--item", "lower-case:1", "--email", "a@example.com"],
    }
    for field, args in cases.items():
        done = await asyncio.to_thread(
            run_cli, dev_env, checkout_settings, "checkout", "--order-id", order_id, *args
        )
        assert done.returncode == 2, done.stdout + done.stderr
        assert f"Invalid checkout: {field}:" in done.stdout
        assert "4242" not in done.stdout.replace(f"{sku}:", "")

    with pytest.raises(httpx.HTTPStatusError):
        shop.get("orders", f"/orders/{order_id}")
    assert shop.charges(order_id) == []
    assert shop.level(sku)["available"] == 5
    with pytest.raises(RPCError):
        await dev_env.client.get_workflow_handle(checkout_workflow_id(order_id)).describe()


async def test_cli_checkout_and_run_against_running_parts(
    dev_env: WorkflowEnvironment, checkout_settings: Settings, shop: Shop
) -> None:
    sku = shop.new_sku(10, 250)
    one = await asyncio.to_thread(
        run_cli,
        dev_env,
        checkout_settings,
        "checkout",
        "--item",
        f"{sku}:2",
        "--expected-total",
        "500",
        "--email",
        "cli@example.com",
        "--json",
    )
    assert one.returncode == 0, one.stdout + one.stderr
    result = CheckoutResult.model_validate_json(one.stdout.strip().splitlines()[-1])
    assert result.status is Outcome.CONFIRMED
    assert result.total_cents == 500
    assert shop.level(sku)["available"] == 8
    [charge] = shop.charges(result.order_id)
    assert (charge["amount_cents"], charge["currency"]) == (500, "EUR")

    many = await asyncio.to_thread(
        run_cli, dev_env, checkout_settings, "run", "--count", "12", "--seed", "7", "--json"
    )
    assert many.returncode == 0, many.stdout + many.stderr
    summary = json.loads(many.stdout.strip().splitlines()[-1])
    assert summary["count"] == 12
    assert sum(summary["outcomes"].values()) == 12
    assert summary["outcomes"].get("CONFIRMED", 0) >= 1


async def test_cli_checkout_steps_run_local_and_answer_before_the_work_after_it(
    dev_env: WorkflowEnvironment, checkout_settings: Settings, shop: Shop
) -> None:
    sku = shop.new_sku(4, 700)
    order_id = f"e2e-local-{uuid.uuid4().hex[:6]}"
    done = await asyncio.to_thread(
        run_cli,
        dev_env,
        checkout_settings,
        "checkout",
        "--order-id",
        order_id,
        "--item",
        f"{sku}:1",
        "--email",
        "local@example.com",
        "--json",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert CheckoutResult.model_validate_json(done.stdout.strip().splitlines()[-1]).status is (
        Outcome.CONFIRMED
    )
    handle = dev_env.client.get_workflow_handle(checkout_workflow_id(order_id))
    await handle.result()
    events = (await handle.fetch_history()).events
    local = [
        e
        for e in events
        if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
        and e.marker_recorded_event_attributes.marker_name == "core_local_activity"
    ]
    scheduled = {
        e.activity_task_scheduled_event_attributes.activity_type.name: e
        for e in events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    }
    # The four steps as local activities (plus the fan-out's two signals); the commit is an
    # activity at the after-answer priority, as the jobs are, done after the answer left...
    assert len(local) == 4 + 2
    assert list(scheduled) == ["commit_stock"]
    assert (
        scheduled["commit_stock"].activity_task_scheduled_event_attributes.priority.priority_key
        == 5
    )
    # ...on the checkout's own task queue.
    commit = scheduled["commit_stock"].activity_task_scheduled_event_attributes
    assert commit.task_queue.name == checkout_settings.task_queue
    answered = next(
        e.event_id
        for e in events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED
    )
    commit_done = next(
        e.event_id
        for e in events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
        and e.activity_task_completed_event_attributes.scheduled_event_id
        == scheduled["commit_stock"].event_id
    )
    assert answered < commit_done  # the answer did not wait for the commit
    jobs = [
        e.start_child_workflow_execution_initiated_event_attributes
        for e in events
        if e.event_type == EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED
    ]
    assert sorted(j.workflow_type.name for j in jobs) == ["SendReceipt", "ShipOrder"]
    assert {j.priority.priority_key for j in jobs} == {5}
    assert shop.level(sku)["available"] == 3
