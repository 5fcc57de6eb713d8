"""The checkout's no-op twin: the Temporal shape of a confirmed checkout, every call a no-op.

What the checkout (workflows/checkout.py on the saga engine, workflows/fanout.py) asks of
Temporal, written directly against the SDK, with no HTTP and no saga engine:

- started by update-with-start of `decision` (REJECT_DUPLICATE, USE_EXISTING), answered
  once the fourth step is done;
- the four steps up to the answer as local activities, in that order, each announced by a
  search attribute upsert (SagaStatus, SagaStep; CustomerId with the first), and one more
  upsert for the decision: six in all, as the engine publishes them;
- the soft deadline as a timer, cancelled once the work is done;
- the commit as an activity at the after-answer priority;
- the fan-out: two abandoned child jobs (REJECT_DUPLICATE, after-answer priority), each one
  local activity; and two signal-with-starts through a local activity that holds the client
  (after-answer priority), to long-lived consumers of their own (one per customer, one per
  analytics shard), which dedupe by event id and continue as new as the real ones do.

So a history of the twin has the event types of a confirmed checkout's
(tests/harness/test_twin.py checks it), and what is left between the two is the checkout's
own work: the services' calls, pydantic models, the engine's bookkeeping.
"""

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy, SearchAttributeUpdate, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

# Names and pure helpers shared with the checkout, passed through the sandbox: it re-imports
# only this module for each twin run, where a checkout run re-imports its modules and the
# engine's (that cost is the checkout's own, docs/performance.md).
with workflow.unsafe.imports_passed_through():
    from models.checkout import CUSTOMER_ID
    from models.consumers import DEFAULT_CONTINUE_AFTER, DEFAULT_REMEMBER
    from models.events import AFTER_ANSWER, ORDER_CONFIRMED_SIGNAL
    from models.fanout import ANALYTICS_SHARDS, analytics_shard
    from temporal_saga.search import SAGA_STATUS, SAGA_STEP
    from workflows.fanout import RecentIds

TWIN_TASK_QUEUE = "bench-twin"
TWIN_WORKFLOW = "BenchTwin"
TWIN_RECEIPT = "BenchTwinReceipt"
TWIN_SHIPPING = "BenchTwinShipping"
TWIN_LOYALTY = "BenchTwinLoyalty"
TWIN_ANALYTICS = "BenchTwinAnalytics"
# The workflow types that end once the work after an answer is done (the consumers don't).
TWIN_SHORT_LIVED = (TWIN_WORKFLOW, TWIN_RECEIPT, TWIN_SHIPPING)
TWIN_CONSUMERS = (TWIN_LOYALTY, TWIN_ANALYTICS)
# The steps the answer waits for.
STEP_ACTIVITY = "bench_twin_step"
STEPS = ("create_order", "reserve_stock", "charge_payment", "confirm_order")
STEP_TIMEOUT = timedelta(seconds=10)
# As the checkout's: a local step tries twice before it would fall back (a no-op never does).
LOCAL_STEP_RETRY = RetryPolicy(maximum_attempts=2)
COMMIT_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=30), maximum_attempts=0)
CONSUMER_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=250), maximum_attempts=5)
SIGNAL_TIMEOUT = timedelta(seconds=5)
SIGNAL_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_attempts=5)
# As the checkout's default decision deadline (models.checkout.CheckoutOptions).
DEADLINE = timedelta(seconds=120)
RUNNING, CONFIRMED = "RUNNING", "CONFIRMED"
JOB_CONSUMERS = ("receipt", "shipping")


@dataclass
class TwinOrder:
    order_id: str
    customer_id: str


@dataclass
class TwinEvent:
    event_id: str
    order_id: str
    customer_id: str


@dataclass
class TwinDelivery:
    workflow_type: str
    workflow_id: str
    task_queue: str
    event: TwinEvent


@dataclass
class TwinConsumerState:
    """Carried by continue-as-new, as models.consumers.LongLivedState."""

    seen: list[str] = field(default_factory=list)
    received: int = 0
    continue_after: int = DEFAULT_CONTINUE_AFTER


def twin_workflow_id(order_id: str) -> str:
    return f"twin-{order_id}"


def twin_loyalty_id(customer_id: str) -> str:
    return f"twin-loyalty-{customer_id}"


def twin_analytics_id(order_id: str) -> str:
    """The same shard as the checkout's Analytics workflow would get (workflows.analytics)."""
    return f"twin-analytics-{analytics_shard(order_id)}"


def twin_analytics_ids() -> list[str]:
    return [f"twin-analytics-{shard}" for shard in range(ANALYTICS_SHARDS)]


def twin_event_id(workflow_id: str) -> str:
    return f"{workflow_id}:OrderConfirmed"


def twin_job_id(event_id: str, consumer: str) -> str:
    return f"{event_id}:{consumer}"


def twin_job_ids(order_id: str) -> list[str]:
    """The order's two jobs, as the twin starts them."""
    event_id = twin_event_id(twin_workflow_id(order_id))
    return [twin_job_id(event_id, consumer) for consumer in JOB_CONSUMERS]


# -- the activities: no-ops, but for the signal-with-start, which is Temporal's own work --------


@activity.defn(name=STEP_ACTIVITY)
async def twin_step(step: str) -> str:
    return step


@activity.defn(name="bench_twin_commit")
async def twin_commit(reservation_id: str) -> str:
    return reservation_id


@activity.defn(name="bench_twin_consume")
async def twin_consume(event_id: str) -> str:
    return event_id


class TwinDeliveries:
    """Signal-with-start from a workflow: an activity holding the client (activities/events.py)."""

    def __init__(self, client: Client) -> None:
        self._client = client

    @activity.defn(name="bench_twin_deliver")
    async def deliver(self, delivery: TwinDelivery) -> str:
        handle = await self._client.start_workflow(
            delivery.workflow_type,
            id=delivery.workflow_id,
            task_queue=delivery.task_queue,
            start_signal=ORDER_CONFIRMED_SIGNAL,
            start_signal_args=[delivery.event],
            priority=AFTER_ANSWER,
        )
        return handle.result_run_id or ""


# -- the checkout's twin ----------------------------------------------------------------------


@workflow.defn(name=TWIN_WORKFLOW)
class TwinWorkflow:
    @workflow.init
    def __init__(self, order: TwinOrder) -> None:
        self._decision: str | None = None
        self._published: tuple[str, str] | None = None

    @workflow.run
    async def run(self, order: TwinOrder) -> str:
        self._publish(RUNNING, "", first=[CUSTOMER_ID.value_set(order.customer_id)])
        # The steps first, then the deadline's timer, as the engine starts them.
        steps = asyncio.ensure_future(self._checkout(order))
        deadline = asyncio.ensure_future(workflow.sleep(DEADLINE))
        try:
            await steps
        finally:
            deadline.cancel()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return CONFIRMED

    @workflow.update
    async def decision(self) -> str:
        await workflow.wait_condition(lambda: self._decision is not None)
        assert self._decision is not None
        return self._decision

    async def _checkout(self, order: TwinOrder) -> None:
        for step in STEPS:
            self._publish(RUNNING, step)
            await workflow.execute_local_activity(
                twin_step, step, start_to_close_timeout=STEP_TIMEOUT, retry_policy=LOCAL_STEP_RETRY
            )
        self._decision = CONFIRMED  # the customer's answer goes out now
        self._publish(CONFIRMED, STEPS[-1])
        workflow_id = workflow.info().workflow_id
        await workflow.execute_activity(
            twin_commit,
            f"{workflow_id}:reserve_stock",
            start_to_close_timeout=STEP_TIMEOUT,
            retry_policy=COMMIT_RETRY,
            priority=AFTER_ANSWER,
        )
        event = TwinEvent(twin_event_id(workflow_id), order.order_id, order.customer_id)
        receipt, shipping = JOB_CONSUMERS
        await asyncio.gather(
            _start_job(TWIN_RECEIPT, event, receipt),
            _start_job(TWIN_SHIPPING, event, shipping),
            _deliver(TWIN_LOYALTY, twin_loyalty_id(order.customer_id), event),
            _deliver(TWIN_ANALYTICS, twin_analytics_id(order.order_id), event),
        )

    def _publish(
        self, status: str, step: str, first: Sequence[SearchAttributeUpdate[Any]] = ()
    ) -> None:
        """One upsert per change of (status, step), as the engine's `_publish`."""
        if (status, step) == self._published:
            return
        self._published = (status, step)
        workflow.upsert_search_attributes(
            [SAGA_STATUS.value_set(status), SAGA_STEP.value_set(step), *first]
        )


async def _start_job(workflow_type: str, event: TwinEvent, consumer: str) -> None:
    # Announced before (a repeat, a reset): the job runs or ran already.
    with contextlib.suppress(WorkflowAlreadyStartedError):
        await workflow.start_child_workflow(
            workflow_type,
            event,
            id=twin_job_id(event.event_id, consumer),
            parent_close_policy=workflow.ParentClosePolicy.ABANDON,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            priority=AFTER_ANSWER,
        )


async def _deliver(workflow_type: str, workflow_id: str, event: TwinEvent) -> None:
    delivery = TwinDelivery(workflow_type, workflow_id, workflow.info().task_queue, event)
    await workflow.execute_local_activity_method(
        TwinDeliveries.deliver,
        delivery,
        start_to_close_timeout=SIGNAL_TIMEOUT,
        retry_policy=SIGNAL_RETRY,
    )


# -- the jobs: one local activity each, as SendReceipt and ShipOrder ---------------------------


async def _consume(event: TwinEvent) -> str:
    return await workflow.execute_local_activity(
        twin_consume,
        event.event_id,
        start_to_close_timeout=STEP_TIMEOUT,
        retry_policy=CONSUMER_RETRY,
    )


@workflow.defn(name=TWIN_RECEIPT)
class TwinReceiptWorkflow:
    @workflow.run
    async def run(self, event: TwinEvent) -> str:
        return await _consume(event)


@workflow.defn(name=TWIN_SHIPPING)
class TwinShippingWorkflow:
    @workflow.run
    async def run(self, event: TwinEvent) -> str:
        return await _consume(event)


# -- the long-lived consumers, as CustomerLoyalty and Analytics (workflows/fanout.py) ----------


class TwinConsumer:
    """Dedup by event id across continue-as-new; continue as new after `continue_after`
    signals in one run, or when Temporal suggests it, once every handler has finished."""

    def __init__(self, state: TwinConsumerState | None) -> None:
        self._state = state or TwinConsumerState()
        self._seen = RecentIds(self._state.seen, DEFAULT_REMEMBER)
        self._in_flight: set[str] = set()
        self._received_this_run = 0

    async def until_due(self) -> None:
        await workflow.wait_condition(
            lambda: (
                self._received_this_run >= self._state.continue_after
                or workflow.info().is_continue_as_new_suggested()
            )
        )
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(
            TwinConsumerState(
                seen=self._seen.newest(),
                received=self._state.received,
                continue_after=self._state.continue_after,
            )
        )

    async def handle(self, event: TwinEvent) -> None:
        self._received_this_run += 1
        self._state.received += 1
        if event.event_id in self._seen or event.event_id in self._in_flight:
            return
        self._in_flight.add(event.event_id)
        try:
            await _consume(event)
            self._seen.add(event.event_id)
        finally:
            self._in_flight.discard(event.event_id)


@workflow.defn(name=TWIN_LOYALTY)
class TwinLoyaltyWorkflow:
    @workflow.init
    def __init__(self, state: TwinConsumerState | None = None) -> None:
        self._consumer = TwinConsumer(state)

    @workflow.run
    async def run(self, state: TwinConsumerState | None = None) -> None:
        await self._consumer.until_due()

    @workflow.signal(name=ORDER_CONFIRMED_SIGNAL)
    async def order_confirmed(self, event: TwinEvent) -> None:
        await self._consumer.handle(event)


@workflow.defn(name=TWIN_ANALYTICS)
class TwinAnalyticsWorkflow:
    @workflow.init
    def __init__(self, state: TwinConsumerState | None = None) -> None:
        self._consumer = TwinConsumer(state)

    @workflow.run
    async def run(self, state: TwinConsumerState | None = None) -> None:
        await self._consumer.until_due()

    @workflow.signal(name=ORDER_CONFIRMED_SIGNAL)
    async def order_confirmed(self, event: TwinEvent) -> None:
        await self._consumer.handle(event)


TWIN_WORKFLOWS: list[type] = [
    TwinWorkflow,
    TwinReceiptWorkflow,
    TwinShippingWorkflow,
    TwinLoyaltyWorkflow,
    TwinAnalyticsWorkflow,
]
