"""Fan-out: announce a decision, fire and forget. Call it from any workflow.

    await announce(event, jobs=[Job("receipt", "SendReceipt")],
                   signals=[Reaction("analytics", "Analytics", "analytics-3", "order_confirmed")])

1. **Jobs** are child workflows, one per event and consumer, started with
   `ParentClosePolicy.ABANDON`: they outlive the caller, which waits only until each has
   *started* (Temporal's rule: an abandoned child must have started before the parent
   returns). The child id is `{event_id}:{consumer}` with `REJECT_DUPLICATE`, so announcing the
   same event again starts nothing twice (`WorkflowAlreadyStartedError` is expected and fine).
2. **Reactions** are signals to long-lived workflows, delivered with signal-with-start by a
   (local) activity that holds the Temporal client, with its own retries. The target
   workflows dedupe by event id.

Nothing here fails the caller: a job that cannot be started or a signal that cannot be
delivered is logged and written as a dead letter (best effort, a few seconds at most) for a
redrive. Cancellation of the caller still propagates.
"""

import asyncio
from collections.abc import Sequence
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError, is_cancelled_exception

from workflows.consumers import describe_failure, job_id, write_dead_letter

with workflow.unsafe.imports_passed_through():
    from activities.events import EventActivities
    from models.consumers import Announcement
    from models.deadletters import ConsumerKind, Delivery, DeliveryTarget
    from models.events import (
        AFTER_ANSWER,
        ORDER_CONFIRMED_SIGNAL,
        ORDER_REJECTED_SIGNAL,
        OrderConfirmed,
        OrderEvent,
        OrderRejected,
    )
    from models.fanout import (
        ANALYTICS_CONSUMER,
        ANALYTICS_WORKFLOW_TYPE,
        CUSTOMER_LOYALTY_WORKFLOW_TYPE,
        LOYALTY_CONSUMER,
        RECEIPT_CONSUMER,
        SEND_RECEIPT_WORKFLOW_TYPE,
        SHIP_ORDER_WORKFLOW_TYPE,
        SHIPPING_CONSUMER,
        Job,
        Reaction,
        analytics_workflow_id,
        loyalty_workflow_id,
    )

# Signal-with-start is one call to Temporal itself: short, a few quick retries.
SIGNAL_TIMEOUT = timedelta(seconds=5)
SIGNAL_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=1),
    maximum_attempts=5,
)
# Writing the dead letter of a failed announcement: bounded, the caller must not wait long.
ANNOUNCE_DEAD_LETTER_TIMEOUT = timedelta(seconds=3)
ANNOUNCE_DEAD_LETTER_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    maximum_interval=timedelta(seconds=1),
    maximum_attempts=3,
)


# What became of one job or reaction (see Announcement).
_STARTED, _ALREADY_STARTED, _SIGNALLED, _FAILED = "started", "already", "signalled", "failed"


async def announce(
    event: OrderEvent, *, jobs: Sequence[Job] = (), signals: Sequence[Reaction] = ()
) -> Announcement:
    """Start `jobs` (abandoned children) and deliver `signals`, concurrently; return once each
    job has started and each signal was delivered (or given up on). Never raises but for a
    cancellation of the caller."""
    report = Announcement(event_id=event.event_id)
    outcomes = await asyncio.gather(
        *(_start_job(event, job) for job in jobs),
        *(_deliver(event, reaction) for reaction in signals),
    )
    # In the order given, whatever order they finished in.
    for kind, name in outcomes:
        {
            _STARTED: report.jobs_started,
            _ALREADY_STARTED: report.jobs_already_started,
            _SIGNALLED: report.signalled,
            _FAILED: report.failed,
        }[kind].append(name)
    return report


async def announce_order_confirmed(event: OrderConfirmed) -> Announcement:
    """Announce a confirmed order (the checkout does, after `commit_stock`). Starts the jobs
    SendReceipt and ShipOrder (abandoned children, ids `{event_id}:receipt` and
    `{event_id}:shipping`) and signals `order_confirmed` to CustomerLoyalty
    (`loyalty-{customer_id}`) and Analytics (the order's shard, `analytics-{shard}`). Waits
    only until the children have started and the signals are delivered; never raises but for a
    cancellation."""
    return await announce(
        event,
        jobs=[
            Job(RECEIPT_CONSUMER, SEND_RECEIPT_WORKFLOW_TYPE),
            Job(SHIPPING_CONSUMER, SHIP_ORDER_WORKFLOW_TYPE),
        ],
        signals=[
            Reaction(
                LOYALTY_CONSUMER,
                CUSTOMER_LOYALTY_WORKFLOW_TYPE,
                loyalty_workflow_id(event.customer_id),
                ORDER_CONFIRMED_SIGNAL,
            ),
            analytics_reaction(event, ORDER_CONFIRMED_SIGNAL),
        ],
    )


async def announce_order_rejected(event: OrderRejected) -> Announcement:
    """Announce a rejected order (the checkout does, after the compensations): signals
    `order_rejected` to Analytics (the order's shard, the one its confirmation would go to).
    Never raises but for a cancellation."""
    return await announce(event, signals=[analytics_reaction(event, ORDER_REJECTED_SIGNAL)])


def analytics_reaction(event: OrderEvent, signal: str) -> Reaction:
    """`signal` to the Analytics shard of the event's order. The shard comes from the order id
    and the build's ANALYTICS_SHARDS, no environment: every worker of one build computes the
    same id, on a first run and on a replay; and an order's events all meet in one shard."""
    return Reaction(
        ANALYTICS_CONSUMER, ANALYTICS_WORKFLOW_TYPE, analytics_workflow_id(event.order_id), signal
    )


async def _start_job(event: OrderEvent, job: Job) -> tuple[str, str]:
    child_id = job_id(event.event_id, job.consumer)
    try:
        await workflow.start_child_workflow(
            job.workflow,
            event,
            id=child_id,
            parent_close_policy=workflow.ParentClosePolicy.ABANDON,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            priority=AFTER_ANSWER,
        )
    except WorkflowAlreadyStartedError:
        # Announced before (a repeat, a retry, a reset): the job runs or ran already.
        return _ALREADY_STARTED, child_id
    except Exception as failure:
        if is_cancelled_exception(failure):
            raise
        error, _ = describe_failure(failure)
        workflow.logger.warning("fan-out: job %s not started: %s", child_id, error)
        target = DeliveryTarget(
            kind=ConsumerKind.JOB,
            workflow_type=job.workflow,
            workflow_id=child_id,
            task_queue=workflow.info().task_queue,
        )
        await _dead_letter_quietly(job.consumer, event, target, error)
        return _FAILED, job.consumer
    return _STARTED, child_id


async def _deliver(event: OrderEvent, reaction: Reaction) -> tuple[str, str]:
    target = DeliveryTarget(
        kind=ConsumerKind.SIGNAL,
        workflow_type=reaction.workflow,
        workflow_id=reaction.workflow_id,
        signal=reaction.signal,
        task_queue=workflow.info().task_queue,
    )
    try:
        await workflow.execute_local_activity_method(
            EventActivities.deliver_order_event,
            Delivery(target=target, event=event),
            start_to_close_timeout=SIGNAL_TIMEOUT,
            retry_policy=SIGNAL_RETRY,
        )
    except Exception as failure:
        if is_cancelled_exception(failure):
            raise
        error, attempts = describe_failure(failure, SIGNAL_RETRY)
        workflow.logger.warning(
            "fan-out: %s not signalled to %s: %s", event.event_id, reaction.workflow_id, error
        )
        await _dead_letter_quietly(reaction.consumer, event, target, error, attempts)
        return _FAILED, reaction.consumer
    return _SIGNALLED, reaction.workflow_id


async def _dead_letter_quietly(
    consumer: str, event: OrderEvent, target: DeliveryTarget, error: str, attempts: int = 1
) -> None:
    try:
        await write_dead_letter(
            consumer,
            event,
            target,
            error,
            attempts,
            start_to_close_timeout=ANNOUNCE_DEAD_LETTER_TIMEOUT,
            retry_policy=ANNOUNCE_DEAD_LETTER_RETRY,
        )
    except Exception as failure:
        if is_cancelled_exception(failure):
            raise
        # The store is down too: the log is all that is left of it.
        workflow.logger.error(
            "fan-out: dead letter for %s/%s not stored: %s", event.event_id, consumer, failure
        )
