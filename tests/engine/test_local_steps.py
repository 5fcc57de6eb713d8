"""Local-first steps (`Step(..., local_first=True)`, the checkout's up to its decision): local
activities that continue as activities when they fail twice (docs/performance.md, local
steps), on the time-skipping server with scripted activities: the steps recorded as markers
instead of activity tasks, compensations still activities, a failing step a pending activity
with the rest of its retry budget, and the histories replay."""

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle
from temporalio.common import RetryPolicy
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from models.checkout import CheckoutResult, checkout_workflow_id
from temporal_saga import STEP_RETRY
from temporal_saga.local import LOCAL_ATTEMPTS, remaining_policy
from temporal_saga.models import Outcome
from tests.support.fake_shop import HEALED, JOURNAL, scripted_checkout_workers, scripted_request
from worker.runner import WORKFLOWS
from workflows.checkout import CheckoutWorkflow

TASK_QUEUE = "checkout-local-steps-tests"
# The steps up to the decision; committing the stock follows the answer as an activity.
STEPS = {"create_order", "reserve_stock", "charge_payment", "confirm_order"}
Handle = WorkflowHandle[CheckoutWorkflow, CheckoutResult]


@pytest.fixture(scope="module")  # one worker for the module: starting one takes most of a second
async def env(time_skipping_env: WorkflowEnvironment) -> AsyncIterator[WorkflowEnvironment]:
    async with scripted_checkout_workers(time_skipping_env.client, TASK_QUEUE):
        yield time_skipping_env


async def run_checkout(
    env: WorkflowEnvironment, script: dict[str, str] | None = None
) -> tuple[CheckoutResult, Handle]:
    request = scripted_request("ls", script, customer="customer-9")
    handle = await env.client.start_workflow(
        CheckoutWorkflow.run,
        request,
        id=checkout_workflow_id(request.order_id),
        task_queue=TASK_QUEUE,
    )
    return await handle.result(), handle


async def scheduled_activities(handle: Handle) -> list[str]:
    history = await handle.fetch_history()
    return [
        event.activity_task_scheduled_event_attributes.activity_type.name
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]


async def markers(handle: Handle) -> list[str]:
    history = await handle.fetch_history()
    return [
        event.marker_recorded_event_attributes.marker_name
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
    ]


async def test_local_steps_confirm_with_markers_not_activity_tasks(
    env: WorkflowEnvironment,
) -> None:
    result, handle = await run_checkout(env)
    assert result.status is Outcome.CONFIRMED
    assert result.steps_done == ["create_order", "reserve_stock", "charge_payment", "confirm_order"]
    scheduled = await scheduled_activities(handle)
    assert not STEPS & set(scheduled)
    # An activity, not a local one: the workflow task carrying the answer ends before it.
    assert scheduled == ["commit_stock"]
    recorded = await markers(handle)
    # One marker per step, and one per fan-out signal (a local activity too).
    assert recorded == ["core_local_activity"] * (len(STEPS) + 2)  # and no patch marker

    replayer = Replayer(workflows=WORKFLOWS, data_converter=env.client.data_converter)
    await replayer.replay_workflow(await handle.fetch_history())


async def test_local_steps_declined_card_compensates_with_activities(
    env: WorkflowEnvironment,
) -> None:
    result, handle = await run_checkout(env, script={"charge_payment": "decline"})
    assert result.status is Outcome.REJECTED
    assert result.reason_code == "card_declined"
    assert result.compensations_done == ["refund_payment", "release_stock", "cancel_order"]
    scheduled = await scheduled_activities(handle)
    assert {"refund_payment", "release_stock", "cancel_order"} <= set(scheduled)
    assert not STEPS & set(scheduled)


async def test_a_step_failing_twice_continues_as_a_visible_activity(
    env: WorkflowEnvironment,
) -> None:
    request = scripted_request("ls-fall", {"charge_payment": "fail"}, customer="customer-9")
    handle = await env.client.start_workflow(
        CheckoutWorkflow.run,
        request,
        id=checkout_workflow_id(request.order_id),
        task_queue=TASK_QUEUE,
    )
    pending: list[str] = []
    for _ in range(100):  # bounded: 10 s
        description = await handle.describe()
        pending = [p.activity_type.name for p in description.raw_description.pending_activities]
        if "charge_payment" in pending:
            break
        await asyncio.sleep(0.1)
    # The operator's view: the charge is a pending activity, its local tries behind it.
    assert pending == ["charge_payment"]
    assert JOURNAL[request.order_id].count("charge_payment") >= LOCAL_ATTEMPTS
    HEALED.add(f"{request.order_id}:charge_payment")

    result = await handle.result()

    assert result.status is Outcome.CONFIRMED
    scheduled = await scheduled_activities(handle)
    assert [s for s in scheduled if s in STEPS] == ["charge_payment"]
    replayer = Replayer(workflows=WORKFLOWS, data_converter=env.client.data_converter)
    await replayer.replay_workflow(await handle.fetch_history())


@pytest.mark.slow  # the test server waits out activity retries in real time (~20 s)
async def test_a_step_that_keeps_failing_gets_the_same_budget_then_compensates(
    env: WorkflowEnvironment,
) -> None:
    result, handle = await run_checkout(env, script={"reserve_stock": "transient"})

    assert result.status is Outcome.REJECTED
    assert result.reason_code == "service_unavailable"
    assert result.compensations_done == ["release_stock", "cancel_order"]
    # Local tries and activity attempts together: the step's whole retry budget, no more.
    order_id = result.order_id
    assert JOURNAL[order_id].count("reserve_stock") == STEP_RETRY.maximum_attempts
    assert [s for s in await scheduled_activities(handle) if s in STEPS] == ["reserve_stock"]


def test_remaining_policy_carries_on_the_backoff_where_the_local_tries_stopped() -> None:
    policy = RetryPolicy(
        initial_interval=timedelta(milliseconds=500),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=5),
        maximum_attempts=8,
        non_retryable_error_types=["card_declined"],
    )
    rest = remaining_policy(policy, 2)
    # Attempts 1 and 2 were local, with 0.5 s between; attempt 3 is followed by 2 s.
    assert rest.maximum_attempts == 6
    assert rest.initial_interval == timedelta(seconds=2)
    assert (rest.backoff_coefficient, rest.maximum_interval) == (2.0, timedelta(seconds=5))
    assert rest.non_retryable_error_types == ["card_declined"]
    # Capped by the maximum interval; an unlimited budget stays unlimited.
    forever = RetryPolicy(maximum_interval=timedelta(seconds=3), maximum_attempts=0)
    assert remaining_policy(forever, 4).initial_interval == timedelta(seconds=3)
    assert remaining_policy(forever, 4).maximum_attempts == 0
