"""The checkout's own business on the time-skipping server, with scripted activities: its
words for the customer, the records its compensations leave, the early decision. What every
saga does (cancel, the pivot, Temporal cancellation, needs-attention) is
tests/engine/test_both_sagas.py."""

import asyncio
from collections.abc import AsyncIterator

import pytest
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from models.checkout import (
    CheckoutOptions,
    CheckoutRequest,
    CheckoutResult,
    checkout_workflow_id,
)
from starter.checkouts import decide_checkout
from temporal_saga.models import CancelSaga, Outcome, SagaProgress
from tests.support.fake_shop import (
    HEALED,
    JOURNAL,
    RELEASED,
    UNDO_REASONS,
    scripted_checkout_workers,
    scripted_request,
)
from workflows.checkout import CheckoutWorkflow

TASK_QUEUE = "checkout-workflow-tests"
Handle = WorkflowHandle[CheckoutWorkflow, CheckoutResult]


@pytest.fixture(scope="module")  # one worker for the module: starting one takes most of a second
async def env(time_skipping_env: WorkflowEnvironment) -> AsyncIterator[WorkflowEnvironment]:
    async with scripted_checkout_workers(time_skipping_env.client, TASK_QUEUE):
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


async def wait_for(handle: Handle, **expect: object) -> SagaProgress[CheckoutResult]:
    """Poll the status query until every expected field matches (bounded)."""
    progress = await handle.query(CheckoutWorkflow.status)
    for _ in range(300):  # 30 s at most
        progress = await handle.query(CheckoutWorkflow.status)
        if all(getattr(progress, k) == v for k, v in expect.items()):
            return progress
        await asyncio.sleep(0.1)
    raise AssertionError(f"never reached {expect}; last status: {progress}")


async def test_deadline_compensates_and_rejects(env: WorkflowEnvironment) -> None:
    request = new_request({"reserve_stock": "fail"}, decision_deadline_seconds=5)
    handle = await start(env, request)
    result = await handle.result()
    # The test server lets a cancelled activity's retries run out; healed, the next ends it.
    HEALED.add(f"{request.order_id}:reserve_stock")
    assert result.status is Outcome.REJECTED
    assert result.reason_code == "deadline_exceeded"
    assert result.reason == "Your order took too long to confirm and was not placed."
    assert result.failed_step is not None and result.failed_step.value == "reserve_stock"
    assert result.compensations_done == ["release_stock", "cancel_order"]
    assert "charge_payment" not in JOURNAL[request.order_id]


async def test_cancel_update_before_pivot_compensates(env: WorkflowEnvironment) -> None:
    # The charge keeps failing: after its local tries it waits as an activity, retrying.
    request = new_request({"charge_payment": "fail"})
    handle = await start(env, request)
    await wait_for(handle, current_step="charge_payment")
    answer = await handle.execute_update(
        CheckoutWorkflow.cancel, CancelSaga(reason="changed my mind")
    )
    assert answer.status is Outcome.REJECTED
    assert answer.reason_code == "cancelled"
    assert answer.reason == "Your order was cancelled (changed my mind)."
    result = await handle.result()
    assert result.compensations_done == ["refund_payment", "release_stock", "cancel_order"]
    assert "confirm_order" not in JOURNAL[request.order_id]
    # The records the undo leaves say why: "<step> failed: <code>".
    assert UNDO_REASONS[request.order_id] == ["charge_payment failed: cancelled"] * 2


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
