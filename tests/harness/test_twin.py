"""The checkout's no-op twin (harness/bench/twin.py) has the checkout's Temporal shape.

One confirmed checkout (the real worker and services) and one twin on the dev server; the
multisets of their histories' event types must be the same: the top-level workflow, one of
its jobs (the receipt), and a long-lived consumer signalled for the first time (the
customer's loyalty workflow). Then the counting rule of harness/bench/cost.py gives both the same
actions.
"""

import asyncio
import uuid
from collections import Counter

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.testing import WorkflowEnvironment

from harness.bench.cost import history_cost
from harness.bench.twin import (
    TWIN_TASK_QUEUE,
    TwinOrder,
    TwinWorkflow,
    twin_job_ids,
    twin_loyalty_id,
    twin_workflow_id,
)
from harness.bench.worker import twin_worker
from models.checkout import CartItem, CheckoutRequest, checkout_workflow_id
from models.events import ORDER_CONFIRMED, event_id
from models.fanout import RECEIPT_CONSUMER, loyalty_workflow_id
from models.payments import CARD_OK
from temporal_saga.client import decide
from temporal_saga.models import Outcome
from tests.support.cards import card_token
from tests.support.stock import new_stocked_sku
from worker.settings import Settings
from workflows.checkout import CheckoutWorkflow
from workflows.fanout import job_id

pytestmark = [pytest.mark.usefixtures("checkout_worker"), pytest.mark.timeout(120)]
# Polls of a consumer's history until its signal has been handled (well under a second).
POLLS = 100


async def event_types(client: Client, workflow_id: str) -> Counter[str]:
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    return Counter(EventType.Name(event.event_type) for event in history.events)


async def handled_consumer(client: Client, workflow_id: str) -> Counter[str]:
    """The consumer's event types once its first signal's local activity is recorded."""
    for _ in range(POLLS):
        types = await event_types(client, workflow_id)
        if types["EVENT_TYPE_MARKER_RECORDED"]:
            return types
        await asyncio.sleep(0.1)
    raise AssertionError(f"{workflow_id} did not handle its signal: {types}")


async def test_the_twin_has_the_checkouts_event_types(
    dev_env: WorkflowEnvironment, checkout_settings: Settings, services: dict[str, str]
) -> None:
    client = dev_env.client
    # A customer of its own, so the loyalty workflow is signalled here for the first time.
    customer = f"twin-test-{uuid.uuid4().hex[:8]}"
    request = CheckoutRequest(
        order_id=f"twin-test-{uuid.uuid4().hex[:10]}",
        customer_id=customer,
        email="twin@example.com",
        payment_token=card_token(services["payments"], CARD_OK),
        items=[CartItem(sku=new_stocked_sku(services, "TWIN"), quantity=1)],
    )
    checkout_id = checkout_workflow_id(request.order_id)
    decision, handle = await decide(
        client,
        CheckoutWorkflow,
        request,
        workflow_id=checkout_id,
        task_queue=checkout_settings.task_queue,
    )
    assert decision.status is Outcome.CONFIRMED
    await handle.result()
    receipt_id = job_id(event_id(checkout_id, ORDER_CONFIRMED), RECEIPT_CONSUMER)
    await client.get_workflow_handle(receipt_id).result()

    twin_order = TwinOrder(f"twin-test-{uuid.uuid4().hex[:10]}", customer)
    twin_id = twin_workflow_id(twin_order.order_id)
    async with twin_worker(client, Settings()):
        answer = await client.execute_update_with_start_workflow(
            TwinWorkflow.decision,
            start_workflow_operation=WithStartWorkflowOperation(
                TwinWorkflow.run,
                twin_order,
                id=twin_id,
                task_queue=TWIN_TASK_QUEUE,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            ),
        )
        assert answer == "CONFIRMED"
        assert await client.get_workflow_handle(twin_id).result() == "CONFIRMED"
        twin_receipt_id = twin_job_ids(twin_order.order_id)[0]
        await client.get_workflow_handle(twin_receipt_id).result()
        twin_loyalty = await handled_consumer(client, twin_loyalty_id(customer))

    checkout_types = await event_types(client, checkout_id)
    assert await event_types(client, twin_id) == checkout_types
    assert await event_types(client, twin_receipt_id) == await event_types(client, receipt_id)
    assert twin_loyalty == await handled_consumer(client, loyalty_workflow_id(customer))
    # What the shape is, so a change to the checkout's shows here too.
    assert checkout_types["EVENT_TYPE_MARKER_RECORDED"] == 6  # 4 steps, 2 signal-with-starts
    assert checkout_types["EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES"] == 6
    assert checkout_types["EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED"] == 2
    assert checkout_types["EVENT_TYPE_ACTIVITY_TASK_SCHEDULED"] == 1  # the commit
    # So they cost the same actions by the counting rule.
    for checkout, twin in ((checkout_id, twin_id), (receipt_id, twin_receipt_id)):
        checkout_history = await client.get_workflow_handle(checkout).fetch_history()
        twin_history = await client.get_workflow_handle(twin).fetch_history()
        checkout_cost = history_cost(checkout_history.events)
        assert checkout_cost.actions == history_cost(twin_history.events).actions
