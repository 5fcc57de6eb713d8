"""The shipping example (examples/shipping), a saga nested in another, on the time-skipping
server: an order's stock, its shipping (a nested saga over two carriers) and its charge.

The ledger is the example's own desks' records (ShopActivities.ledger), kept by the worker
in this process: what each activity changed, in the order it happened, across parent and
child. Undone work must come back newest first, the child's before the parent's stock. The
example's command (`python -m examples.shipping order`) runs against a dev server.
"""

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from examples.shipping.__main__ import main as shipping_command
from examples.shipping.activities import ShopActivities
from examples.shipping.models import (
    OrderRequest,
    OrderResult,
    ShippingResult,
    Simulation,
    order_workflow_id,
    shipping_workflow_id,
)
from examples.shipping.worker import TASK_QUEUE_ENV, shipping_worker
from examples.shipping.workflow import OrderWorkflow, ShippingWorkflow
from temporal_saga import PARENT_COMPENSATED, CancelSaga, CompensationState, Outcome, SagaStatus
from temporal_saga.client import retry_compensation

TASK_QUEUE = "shipping-example-tests"
BOOKED = ["reserve_stock", "book_pickup", "book_delivery"]


@dataclass(frozen=True)
class Shop:
    client: Client
    desks: ShopActivities


@pytest.fixture(scope="module")
async def shop(time_skipping_env: WorkflowEnvironment) -> AsyncIterator[Shop]:
    desks = ShopActivities()
    async with shipping_worker(time_skipping_env.client, TASK_QUEUE, desks):
        yield Shop(time_skipping_env.client, desks)


def order(**simulate: Any) -> OrderRequest:
    return OrderRequest(
        order_id=uuid.uuid4().hex[:12],
        sku="teapot",
        address="1 Main Street",
        amount_cents=4_900,
        attempts_before_attention=simulate.pop("attempts_before_attention", 3),
        simulate=Simulation.model_validate(simulate),
    )


async def start(shop: Shop, request: OrderRequest) -> WorkflowHandle[OrderWorkflow, OrderResult]:
    return await shop.client.start_workflow(
        OrderWorkflow.run, request, id=order_workflow_id(request.order_id), task_queue=TASK_QUEUE
    )


def child_of(shop: Shop, request: OrderRequest) -> WorkflowHandle[Any, ShippingResult]:
    return shop.client.get_workflow_handle_for(
        ShippingWorkflow.run, shipping_workflow_id(request.order_id)
    )


async def until(handle: WorkflowHandle[Any, Any], what: str, reached: Any) -> Any:
    """Poll the saga's status query until `reached(progress)` (bounded, in real time)."""
    progress = None
    for _ in range(200):  # 20 s at most
        try:
            progress = await handle.query("status")
        except RPCError:  # a nested saga its parent has not started yet
            await asyncio.sleep(0.1)
            continue
        if reached(progress):
            return progress
        await asyncio.sleep(0.1)
    raise AssertionError(f"{handle.id} never reached {what}; last status: {progress}")


async def test_confirmed_the_child_stands_once_the_parent_is_charged(shop: Shop) -> None:
    request = order()
    handle = await start(shop, request)

    result = await handle.result()
    child = await child_of(shop, request).result()

    assert (result.status, result.steps_done) == (
        Outcome.CONFIRMED,
        ["reserve_stock", "shipping", "charge"],
    )
    assert (child.status, child.steps_done) == (Outcome.CONFIRMED, ["book_pickup", "book_delivery"])
    assert child.order_id == request.order_id and child.compensations == []
    assert shop.desks.done(request.order_id) == [*BOOKED, "charge"]


async def test_charge_declined_undoes_the_child_then_the_stock(shop: Shop) -> None:
    request = order(charge_declined=True)
    handle = await start(shop, request)

    result = await handle.result()
    child = await child_of(shop, request).result()

    assert (result.status, result.failed_step, result.reason_code) == (
        Outcome.REJECTED,
        "charge",
        "charge_declined",
    )
    # The nested saga is one compensation of its parent, undone before the older stock.
    assert result.compensations_done == ["shipping", "release_stock"]
    # The child had finished its steps: it waited, then compensated on its parent's word.
    assert child.steps_done == ["book_pickup", "book_delivery"]
    assert (child.status, child.reason_code) == (Outcome.REJECTED, PARENT_COMPENSATED)
    assert child.compensations_done == ["cancel_delivery", "cancel_pickup"]
    # Newest first across parent and child.
    assert shop.desks.done(request.order_id) == [
        *BOOKED,
        "cancel_delivery",
        "cancel_pickup",
        "release_stock",
    ]


async def test_a_refusing_carrier_rejects_the_child_and_the_parent_compensates(
    shop: Shop,
) -> None:
    request = order(refusing_carrier="b")
    handle = await start(shop, request)

    result = await handle.result()
    child = await child_of(shop, request).result()

    # The child rejected itself: its refused delivery's undo runs too (a tombstone), newest
    # first, and the parent's step fails with the child's reason.
    assert (child.status, child.failed_step, child.reason_code) == (
        Outcome.REJECTED,
        "book_delivery",
        "carrier_refused",
    )
    assert child.compensations_done == ["cancel_delivery", "cancel_pickup"]
    assert (result.status, result.failed_step, result.reason_code) == (
        Outcome.REJECTED,
        "shipping",
        "carrier_refused",
    )
    assert result.steps_done == ["reserve_stock"]
    assert result.compensations_done == ["shipping", "release_stock"]
    assert shop.desks.done(request.order_id) == [
        "reserve_stock",
        "book_pickup",
        "cancel_delivery",
        "cancel_pickup",
        "release_stock",
    ]


async def test_a_stuck_carrier_cancel_holds_the_parent_until_an_operator_retries(
    shop: Shop,
) -> None:
    request = order(
        charge_declined=True, cancel_failures={"cancel_pickup": 1}, attempts_before_attention=1
    )
    handle = await start(shop, request)
    child = child_of(shop, request)

    stuck = await until(child, "NEEDS_ATTENTION", lambda p: p["status"] == "NEEDS_ATTENTION")
    assert stuck["stuck"] == ["cancel_pickup"]
    # The parent shows what it waits for: its nested saga, and which compensation is stuck.
    parent = await until(
        handle,
        "its child's NEEDS_ATTENTION",
        lambda p: p["children"] and p["children"][0]["status"] == "NEEDS_ATTENTION",
    )
    assert parent["children"][0]["stuck"] == ["cancel_pickup"]
    waiting = parent["compensations"][0]
    assert (waiting["name"], waiting["state"]) == ("shipping", CompensationState.RUNNING)
    assert "NEEDS_ATTENTION (cancel_pickup stuck)" in waiting["waiting_for"]

    assert await retry_compensation(shop.client, child.id) == "cancel_pickup"

    result = await handle.result()
    assert (await child.result()).compensations_done == ["cancel_delivery", "cancel_pickup"]
    assert result.compensations_done == ["shipping", "release_stock"]
    assert shop.desks.done(request.order_id)[-3:] == [
        "cancel_delivery",
        "cancel_pickup",
        "release_stock",
    ]


async def test_a_cancel_of_the_parent_reaches_the_child_mid_way(shop: Shop) -> None:
    request = order(slow_step="book_delivery", slow_seconds=2)
    handle = await start(shop, request)
    child = child_of(shop, request)
    await until(child, "book_delivery", lambda p: p["current_step"] == "book_delivery")

    answer = await handle.execute_update(OrderWorkflow.cancel, CancelSaga(reason="not now"))

    assert (answer.status, answer.reason_code) == (Outcome.REJECTED, "cancelled")
    result = await handle.result()
    shipped = await child.result()
    assert (shipped.status, shipped.reason_code) == (Outcome.REJECTED, PARENT_COMPENSATED)
    assert shipped.compensations_done == ["cancel_delivery", "cancel_pickup"]
    assert result.compensations_done == ["shipping", "release_stock"]
    # The slow delivery lands after its undo left a tombstone: refused, never booked.
    await asyncio.sleep(2.5)
    assert "book_delivery" not in shop.desks.done(request.order_id)


async def test_the_child_refuses_a_cancel_while_it_waits_for_its_parent(shop: Shop) -> None:
    request = order(slow_step="charge", slow_seconds=2)
    handle = await start(shop, request)
    child = child_of(shop, request)
    await until(handle, "the charge", lambda p: p["current_step"] == "charge")

    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await child.execute_update(ShippingWorkflow.cancel, CancelSaga(reason="no"))

    assert "its parent decides" in str(refused.value.cause)
    assert (await handle.result()).status is Outcome.CONFIRMED
    assert (await child.result()).status is Outcome.CONFIRMED
    assert (await child.query(ShippingWorkflow.status)).status is SagaStatus.CONFIRMED


async def test_a_temporal_cancel_of_the_parent_reaches_the_child_mid_way(shop: Shop) -> None:
    request = order(slow_step="book_delivery", slow_seconds=2)
    handle = await start(shop, request)
    child = child_of(shop, request)
    await until(child, "book_delivery", lambda p: p["current_step"] == "book_delivery")

    await handle.cancel()

    result = await handle.result()
    shipped = await child.result()
    assert (result.status, result.reason_code) == (Outcome.REJECTED, "cancelled")
    assert (shipped.status, shipped.reason_code) == (Outcome.REJECTED, PARENT_COMPENSATED)
    assert shipped.compensations_done == ["cancel_delivery", "cancel_pickup"]
    assert result.compensations_done == ["shipping", "release_stock"]


async def test_the_order_command_places_an_order_on_a_dev_server(
    dev_env: WorkflowEnvironment,
) -> None:
    """`python -m examples.shipping order --declined`, against a worker of the example."""
    queue = f"{TASK_QUEUE}-{uuid.uuid4().hex[:8]}"
    order_id = f"cli-{uuid.uuid4().hex[:8]}"
    command_env = {
        **os.environ,
        "TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "TEMPORAL_NAMESPACE": "default",
        TASK_QUEUE_ENV: queue,
    }
    command = [sys.executable, "-m", "examples.shipping", "order", "--order-id", order_id]
    desks = ShopActivities()
    async with shipping_worker(dev_env.client, queue, desks):
        done = await asyncio.to_thread(
            subprocess.run,
            [*command, "--declined"],
            env=command_env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        answer = OrderResult.model_validate_json(done.stdout)
        assert (answer.status, answer.reason_code) == (Outcome.REJECTED, "charge_declined")
        assert shipping_workflow_id(order_id) in done.stderr
        child = dev_env.client.get_workflow_handle(
            shipping_workflow_id(order_id), result_type=ShippingResult
        )
        assert (await child.result()).compensations_done == ["cancel_delivery", "cancel_pickup"]
        parent = dev_env.client.get_workflow_handle(
            order_workflow_id(order_id), result_type=OrderResult
        )
        await parent.result()
    assert desks.done(order_id)[-3:] == ["cancel_delivery", "cancel_pickup", "release_stock"]


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--order-id", "no spaces"], "--order-id"),
        (["--amount-cents", "0"], "--amount-cents"),
        (["--slow", "book_boat:1"], "--slow"),
        (["--refusing-carrier", "c"], "--refusing-carrier"),
        (["--cancel-failures", "cancel_pickup:x"], "--cancel-failures"),
    ],
)
def test_bad_input_to_the_order_command_names_the_option(
    args: list[str], option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Refused before anything starts: exit 2, the option named (no Temporal needed)."""
    code: int | str | None
    try:
        code = shipping_command(["order", *args])
    except SystemExit as exit_:  # argparse's refusal
        code = exit_.code
    out, err = capsys.readouterr()
    assert code == 2 and option in err and out == "", out + err
