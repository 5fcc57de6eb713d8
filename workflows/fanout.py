"""The fan-out: from a checkout's decision to each consumer of it. Read from the top:

1. **Announce.** The checkout announces its event: `announce_order_confirmed` starts the jobs
   SendReceipt and ShipOrder and signals CustomerLoyalty and Analytics;
   `announce_order_rejected` signals Analytics. Any workflow can use the general `announce`:

       await announce(
           event,
           jobs=[Job("receipt", "SendReceipt")],
           signals=[Reaction("analytics", "Analytics", "analytics-3", "order_confirmed")],
       )

2. **Jobs** are child workflows, one per event and consumer, started with
   `ParentClosePolicy.ABANDON`: they outlive the caller, which waits only until each has
   *started* (Temporal's rule: an abandoned child must have started before the parent
   returns). The child id is `{event_id}:{consumer}` with `REJECT_DUPLICATE`, so announcing the
   same event again starts nothing twice (`WorkflowAlreadyStartedError` is expected and fine).
3. **Reactions** are signals to long-lived workflows, delivered with signal-with-start by a
   (local) activity that holds the Temporal client, with its own retries.
4. **Consumers.** A job (workflows/jobs.py) is `run_job`: one call to its service with the
   consumer's budget (`CONSUMER_RETRY`). A long-lived workflow (workflows/loyalty.py,
   workflows/analytics.py) keeps a `LongLivedConsumer`: the same call once per event id, a
   dedup that survives continue-as-new.
5. **Dead letters.** A consumer whose budget is spent writes a durable dead letter (event,
   consumer, error, attempts) for a redrive, and reports DEAD_LETTERED instead of failing.

Nothing in the announcement fails the caller: a job that cannot be started or a signal that
cannot be delivered is logged and written as a dead letter (best effort, a few seconds at
most). Cancellation of the caller still propagates.

This module defines no workflow and holds no state: the worker passes it through the sandbox
(worker/tuning.py).
"""

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import timedelta
from typing import Any, Generic, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import (
    FailureError,
    WorkflowAlreadyStartedError,
    is_cancelled_exception,
)

from temporal_saga.failures import read_failure
from temporal_saga.metrics import count

with workflow.unsafe.imports_passed_through():
    from activities.deadletters import DeadLetterActivities
    from activities.events import EventActivities
    from models.consumers import Announcement, ConsumerResult, ConsumerStatus, LongLivedState
    from models.deadletters import (
        ConsumerKind,
        Delivery,
        DeliveryTarget,
        NewDeadLetter,
        letter_id,
    )
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

S = TypeVar("S", bound=LongLivedState)
A = TypeVar("A")
R = TypeVar("R")

# -- 1. announce ------------------------------------------------------------------------------


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


# -- 2. jobs: one child workflow per event and consumer ----------------------------------------


def job_id(event_id: str, consumer: str) -> str:
    """A job's child workflow id: one per event and consumer (`checkout-o1:OrderConfirmed:receipt`).

    It is also the id of its dead letter.
    """
    return f"{event_id}:{consumer}"


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


# -- 3. reactions: a signal (with start) to a long-lived workflow ------------------------------

# Signal-with-start is one call to Temporal itself: short, a few quick retries.
SIGNAL_TIMEOUT = timedelta(seconds=5)
SIGNAL_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=1),
    maximum_attempts=5,
)


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


# Writing the dead letter of a failed announcement: bounded, the caller must not wait long.
ANNOUNCE_DEAD_LETTER_TIMEOUT = timedelta(seconds=3)
ANNOUNCE_DEAD_LETTER_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    maximum_interval=timedelta(seconds=1),
    maximum_attempts=3,
)


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


# -- 4. consumers: one call to a service, with a bounded budget --------------------------------

CONSUMER_TIMEOUT = timedelta(seconds=10)
# A consumer's budget: 5 attempts over about 4 s (0.25 s, 0.5 s, 1 s, 2 s between them).
CONSUMER_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=250),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=2),
    maximum_attempts=5,
)
REDRIVE_MEMO = "redrive"


def consumer_call(activity: Callable[[Any, A], Awaitable[R]], arg: A) -> Awaitable[R]:
    """A consumer's one call to its service, with the consumer's budget (CONSUMER_RETRY), as a
    local activity: one workflow task per event, and no activity task."""
    return workflow.execute_local_activity_method(
        activity, arg, start_to_close_timeout=CONSUMER_TIMEOUT, retry_policy=CONSUMER_RETRY
    )


async def run_job(
    consumer: str, event: OrderEvent, activity: Callable[[Any, A], Awaitable[object]], arg: A
) -> ConsumerResult:
    """The whole of a job workflow: `activity(arg)` with the consumer's budget; once it is
    spent, a dead letter whose redrive starts this job again (its canonical id, the task
    queue it ran on; memo `redrive`: n on the n-th redrive)."""
    info = workflow.info()
    target = DeliveryTarget(
        kind=ConsumerKind.JOB,
        workflow_type=info.workflow_type,
        workflow_id=job_id(event.event_id, consumer),
        task_queue=info.task_queue,
    )
    # A memo, not an input: a job's one input is the event.
    redrive: int = workflow.memo_value(REDRIVE_MEMO, 0, type_hint=int)
    return await consume(
        consumer, event, target, lambda: consumer_call(activity, arg), redrive=redrive
    )


async def consume(
    consumer: str,
    event: OrderEvent,
    target: DeliveryTarget,
    action: Callable[[], Awaitable[object]],
    *,
    redrive: int = 0,
) -> ConsumerResult:
    """Run `action` (a consumer activity with CONSUMER_RETRY); when it fails for good, write a
    dead letter and report DEAD_LETTERED. Never raises for the action's failure."""
    try:
        await action()
    except FailureError as failure:
        if is_cancelled_exception(failure):
            raise
        error, attempts = describe_failure(failure, CONSUMER_RETRY)
        workflow.logger.warning(
            "consumer %s gave up on %s after %d attempts: %s",
            consumer,
            event.event_id,
            attempts,
            error,
        )
        await write_dead_letter(consumer, event, target, error, attempts, redrive=redrive)
        return ConsumerResult(
            consumer=consumer,
            event_id=event.event_id,
            status=ConsumerStatus.DEAD_LETTERED,
            attempts=attempts,
            error=error,
        )
    return ConsumerResult(consumer=consumer, event_id=event.event_id, status=ConsumerStatus.DONE)


class LongLivedConsumer(Generic[S]):
    """Dedup and bookkeeping of a long-lived consumer workflow (CustomerLoyalty, Analytics),
    carried by continue-as-new: the ids of handled events (bounded, oldest dropped), the ones
    in flight, counters, and when to continue as new.

    An event counts as handled only when its consumer activity succeeded: a dead-lettered event
    is not remembered, so its redrive (the same signal again) is let through.
    """

    def __init__(self, state: S) -> None:
        self.state = state
        self._seen = RecentIds(state.seen, state.remember)
        self._in_flight: set[str] = set()
        self._received_this_run = 0

    async def handle(
        self,
        consumer: str,
        event: OrderEvent,
        signal: str,
        action: Callable[[], Awaitable[object]],
    ) -> bool:
        """Apply `action` once per event id. True when applied now."""
        self._received_this_run += 1
        self.state.received += 1
        if event.event_id in self._seen or event.event_id in self._in_flight:
            self.state.duplicates_ignored += 1
            return False
        self._in_flight.add(event.event_id)
        try:
            info = workflow.info()
            target = DeliveryTarget(
                kind=ConsumerKind.SIGNAL,
                workflow_type=info.workflow_type,
                workflow_id=info.workflow_id,
                signal=signal,
                task_queue=info.task_queue,
            )
            result = await consume(consumer, event, target, action)
            if result.status is ConsumerStatus.DEAD_LETTERED:
                self.state.dead_lettered += 1
                return False
            self._seen.add(event.event_id)
            self.state.applied += 1
            return True
        finally:
            self._in_flight.discard(event.event_id)

    def continue_as_new_due(self) -> bool:
        return (
            self._received_this_run >= self.state.continue_after
            or workflow.info().is_continue_as_new_suggested()
        )

    def snapshot(self) -> S:
        """The state as it stands, with the newest handled ids."""
        return self.state.model_copy(update={"seen": self._seen.newest()})

    async def run_until_due(self) -> S:
        """Wait until continue-as-new is due and every signal handler has finished; return
        the state for the next run."""
        await workflow.wait_condition(self.continue_as_new_due)
        # Drain: signals that arrived meanwhile finish here, none is lost by the new run.
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.snapshot().model_copy(update={"generation": self.state.generation + 1})


class RecentIds:
    """An insertion-ordered set that keeps only the newest `limit` ids."""

    def __init__(self, ids: Iterable[str], limit: int) -> None:
        self._limit = limit
        self._ids: dict[str, None] = {}
        for event_id in ids:
            self.add(event_id)

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, event_id: str) -> None:
        self._ids.pop(event_id, None)
        self._ids[event_id] = None
        if len(self._ids) > self._limit:
            # Only ever one over the limit: drop the oldest.
            del self._ids[next(iter(self._ids))]

    def newest(self) -> list[str]:
        return list(self._ids)


# -- 5. dead letters: what a consumer leaves when its budget is spent ---------------------------

DEAD_LETTERS = "dead_letters"
# The dead letter itself is retried until it is stored: it is the record that nothing is lost.
DEAD_LETTER_TIMEOUT = timedelta(seconds=10)
DEAD_LETTER_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=0,
)


def describe_failure(failure: BaseException, policy: RetryPolicy | None = None) -> tuple[str, int]:
    """The last error's words and how many attempts were made (of a call with `policy`)."""
    read = read_failure(failure, policy)
    return read.words, read.attempts or 1


async def write_dead_letter(
    consumer: str,
    event: OrderEvent,
    target: DeliveryTarget,
    error: str,
    attempts: int,
    *,
    redrive: int = 0,
    start_to_close_timeout: timedelta = DEAD_LETTER_TIMEOUT,
    retry_policy: RetryPolicy = DEAD_LETTER_RETRY,
) -> None:
    letter = NewDeadLetter(
        letter_id=letter_id(event.event_id, consumer),
        failure_id=str(workflow.uuid4()),
        consumer=consumer,
        event=event,
        target=target,
        error=error,
        attempts=attempts,
        redrive=redrive,
    )
    await workflow.execute_activity_method(
        DeadLetterActivities.record_dead_letter,
        letter,
        start_to_close_timeout=start_to_close_timeout,
        retry_policy=retry_policy,
    )
    count(DEAD_LETTERS, "dead letters written, by consumer", consumer=consumer)
