"""The checkout workflow's own semantics on the time-skipping server, with scripted activities:
deadline, cancel update, Temporal cancellation, pivot, needs-attention, the early decision."""

import asyncio
from collections.abc import AsyncIterator

import pytest
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from models.checkout import (
    CancelCheckout,
    CheckoutOptions,
    CheckoutProgress,
    CheckoutRequest,
    CheckoutResult,
    SkipCompensation,
)
from models.saga import Outcome
from starter.checkouts import decide_checkout
from tests.fake_shop import (
    HEALED,
    JOURNAL,
    RELEASED,
    scripted_checkout_workers,
    scripted_request,
)
from worker.after_answer import after_answer_slots
from worker.settings import Settings
from workflows.checkout import CHECKOUT_STATUS, CUSTOMER_ID, CheckoutWorkflow, checkout_workflow_id

TASK_QUEUE = "checkout-workflow-tests"
Handle = WorkflowHandle[CheckoutWorkflow, CheckoutResult]


@pytest.fixture
async def env(time_skipping_env: WorkflowEnvironment) -> AsyncIterator[WorkflowEnvironment]:
    slots = after_answer_slots(Settings())
    async with scripted_checkout_workers(time_skipping_env.client, TASK_QUEUE, slots):
        yield time_skipping_env


def new_request(script: dict[str, str], **options: int) -> CheckoutRequest:
    return scripted_request("wf", script, options=CheckoutOptions(**options))


async def start(env: WorkflowEnvironment, request: CheckoutRequest) -> Handle:
    return await env.client.start_workflow(
        CheckoutWorkflow.run,
        request,
        id=checkout_workflow_id(request.order_id),
        task_queue=TASK_QUEUE,
    )


async def wait_for(handle: Handle, **expect: object) -> CheckoutProgress:
    """Poll the status query until every expected field matches (bounded)."""
    progress = await handle.query(CheckoutWorkflow.status)
    for _ in range(300):  # 30 s at most
        progress = await handle.query(CheckoutWorkflow.status)
        if all(getattr(progress, k) == v for k, v in expect.items()):
            return progress
        await asyncio.sleep(0.1)
    raise AssertionError(f"never reached {expect}; last status: {progress}")


async def test_deadline_compensates_and_rejects(env: WorkflowEnvironment) -> None:
    request = new_request({"reserve_stock": "transient"}, decision_deadline_seconds=5)
    handle = await start(env, request)
    result = await handle.result()
    assert result.status is Outcome.REJECTED
    assert result.reason_code == "deadline_exceeded"
    assert result.failed_step is not None and result.failed_step.value == "reserve_stock"
    assert result.compensations_done == ["release_stock", "cancel_order"]
    assert "charge_payment" not in JOURNAL[request.order_id]


async def test_cancel_update_before_pivot_compensates(env: WorkflowEnvironment) -> None:
    request = new_request({"charge_payment": "wait"})
    handle = await start(env, request)
    await wait_for(handle, current_step="charge_payment")
    answer = await handle.execute_update(
        CheckoutWorkflow.cancel, CancelCheckout(reason="changed my mind")
    )
    assert answer.status is Outcome.REJECTED
    assert answer.reason_code == "cancelled"
    assert answer.reason is not None and "changed my mind" in answer.reason
    result = await handle.result()
    RELEASED.add(f"{request.order_id}:charge_payment")
    assert result.compensations_done == ["refund_payment", "release_stock", "cancel_order"]
    assert "confirm_order" not in JOURNAL[request.order_id]


async def test_cancel_is_refused_once_the_pivot_started(env: WorkflowEnvironment) -> None:
    request = new_request({"confirm_order": "wait"})
    handle = await start(env, request)
    await wait_for(handle, current_step="confirm_order")
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(CheckoutWorkflow.cancel, CancelCheckout())
    assert "too late to cancel" in str(refused.value.cause)
    RELEASED.add(f"{request.order_id}:confirm_order")
    result = await handle.result()
    assert result.status is Outcome.CONFIRMED
    assert result.compensations_done == []
    assert JOURNAL[request.order_id][-2:] == ["commit_stock", "commit_stock:done"]


async def test_workflow_cancellation_twice_still_compensates_to_the_end(
    env: WorkflowEnvironment,
) -> None:
    request = new_request({"charge_payment": "wait", "refund_payment": "fail"})
    handle = await start(env, request)
    await wait_for(handle, current_step="charge_payment")
    await handle.cancel()
    await wait_for(handle, status="COMPENSATING")
    await asyncio.sleep(0.5)  # the refund is failing and retrying now
    await handle.cancel()
    HEALED.add(f"{request.order_id}:refund_payment")
    result = await handle.result()
    RELEASED.add(f"{request.order_id}:charge_payment")
    assert result.status is Outcome.REJECTED
    assert result.reason_code == "cancelled"
    assert result.compensations_done == ["refund_payment", "release_stock", "cancel_order"]


async def test_stuck_compensation_needs_attention_then_skip(env: WorkflowEnvironment) -> None:
    request = new_request(
        {"charge_payment": "decline", "release_stock": "fail"},
        compensation_attempts_before_attention=2,
    )
    handle = await start(env, request)
    progress = await wait_for(handle, status="NEEDS_ATTENTION")
    assert progress.stuck == ["release_stock"]
    assert progress.decision is not None and progress.decision.reason_code == "card_declined"
    attributes = (await handle.describe()).typed_search_attributes
    assert attributes.get(CHECKOUT_STATUS) == "NEEDS_ATTENTION"
    assert attributes.get(CUSTOMER_ID) == "customer-7"
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(
            CheckoutWorkflow.skip_compensation, SkipCompensation(reason="x", name="cancel_order")
        )
    assert "no stuck compensation named 'cancel_order'" in str(refused.value.cause)
    skipped = await handle.execute_update(
        CheckoutWorkflow.skip_compensation,
        SkipCompensation(reason="released by hand in the warehouse tool"),
    )
    assert skipped == "release_stock"
    result = await handle.result()
    states = {c.name: (c.state, c.skip_reason) for c in result.compensations}
    assert states == {
        "refund_payment": ("DONE", None),
        "release_stock": ("SKIPPED", "released by hand in the warehouse tool"),
        "cancel_order": ("DONE", None),
    }


async def test_stuck_compensation_retried_by_operator_succeeds(env: WorkflowEnvironment) -> None:
    request = new_request(
        {"reserve_stock": "out_of_stock", "cancel_order": "fail"},
        compensation_attempts_before_attention=1,
    )
    handle = await start(env, request)
    await wait_for(handle, status="NEEDS_ATTENTION", stuck=["cancel_order"])
    HEALED.add(f"{request.order_id}:cancel_order")
    assert await handle.execute_update(CheckoutWorkflow.retry_compensation, "cancel_order") == (
        "cancel_order"
    )
    result = await handle.result()
    assert result.compensations_done == ["release_stock", "cancel_order"]
    assert (await handle.query(CheckoutWorkflow.status)).status == "REJECTED"


async def test_decision_arrives_before_the_work_after_it(env: WorkflowEnvironment) -> None:
    request = new_request({"commit_stock": "wait"})
    decision, handle = await decide_checkout(env.client, request, TASK_QUEUE)
    assert decision.status is Outcome.CONFIRMED
    # The checkout is still committing the stock: the caller did not wait for it.
    assert (await handle.describe()).status is not None
    assert "commit_stock:done" not in JOURNAL[request.order_id]
    again, _ = await decide_checkout(env.client, request, TASK_QUEUE)
    assert again == decision
    RELEASED.add(f"{request.order_id}:commit_stock")
    assert (await handle.result()).status is Outcome.CONFIRMED
