"""`options.local_steps`: the checkout's forward steps as local activities (README
"Performance"), on the time-skipping server with scripted activities: the same answers, the
steps recorded as markers instead of activity tasks, compensations still activities, and the
history replays."""

from collections.abc import AsyncIterator

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from models.checkout import (
    CheckoutOptions,
    CheckoutResult,
    CheckoutStatus,
)
from models.deadletters import Delivery
from tests.fake_shop import scripted_checkout_workers, scripted_request
from worker.after_answer import after_answer_slots
from worker.runner import WORKFLOWS
from worker.settings import Settings
from workflows.checkout import CheckoutWorkflow, checkout_workflow_id

TASK_QUEUE = "checkout-local-steps-tests"
# The steps up to the decision; committing the stock follows the answer as an activity.
STEPS = {"create_order", "reserve_stock", "charge_payment", "confirm_order"}
Handle = WorkflowHandle[CheckoutWorkflow, CheckoutResult]


@activity.defn(name="deliver_order_event")
async def deliver_order_event(delivery: Delivery) -> str:
    """The fan-out's signal, delivered nowhere: these tests are about the steps."""
    return "delivered"


@pytest.fixture
async def env(time_skipping_env: WorkflowEnvironment) -> AsyncIterator[WorkflowEnvironment]:
    slots = after_answer_slots(Settings())
    async with scripted_checkout_workers(
        time_skipping_env.client, TASK_QUEUE, slots, extra_activities=[deliver_order_event]
    ):
        yield time_skipping_env


async def run_checkout(
    env: WorkflowEnvironment, local_steps: bool, script: dict[str, str] | None = None
) -> tuple[CheckoutResult, Handle]:
    request = scripted_request(
        "ls", script, customer="customer-9", options=CheckoutOptions(local_steps=local_steps)
    )
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
    result, handle = await run_checkout(env, local_steps=True)
    assert result.status is CheckoutStatus.CONFIRMED
    assert result.steps_done == ["create_order", "reserve_stock", "charge_payment", "confirm_order"]
    scheduled = await scheduled_activities(handle)
    assert not STEPS & set(scheduled)
    # An activity, not a local one: the workflow task carrying the answer ends before it.
    assert scheduled == ["commit_stock"]
    recorded = await markers(handle)
    # One marker per step, and one per fan-out signal (a local activity too).
    assert recorded.count("core_local_activity") == len(STEPS) + 2
    assert "core_patch" in recorded

    replayer = Replayer(workflows=WORKFLOWS, data_converter=env.client.data_converter)
    await replayer.replay_workflow(await handle.fetch_history())


async def test_default_steps_stay_activity_tasks(env: WorkflowEnvironment) -> None:
    result, handle = await run_checkout(env, local_steps=False)
    assert result.status is CheckoutStatus.CONFIRMED
    assert set(await scheduled_activities(handle)) == STEPS | {"commit_stock"}
    # Only the fan-out's two signals are local activities.
    assert (await markers(handle)).count("core_local_activity") == 2


async def test_local_steps_declined_card_compensates_with_activities(
    env: WorkflowEnvironment,
) -> None:
    result, handle = await run_checkout(env, local_steps=True, script={"charge_payment": "decline"})
    assert result.status is CheckoutStatus.REJECTED
    assert result.reason_code == "card_declined"
    assert result.compensations_done == ["refund_payment", "release_stock", "cancel_order"]
    scheduled = await scheduled_activities(handle)
    assert {"refund_payment", "release_stock", "cancel_order"} <= set(scheduled)
    assert not STEPS & set(scheduled)
