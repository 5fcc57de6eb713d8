"""What every consumer of the checkout's events shares: a bounded retry budget, the dead
letter written when it is spent, and (for long-lived workflows) dedup by event id that
survives continue-as-new.

- `consume(...)` runs one consumer activity with `CONSUMER_RETRY` (5 attempts, short
  backoff). When it fails for good it writes a durable dead letter (event, consumer, error,
  attempts) through the dead-letters service and reports DEAD_LETTERED instead of failing.
- `LongLivedConsumer` is the state of CustomerLoyalty and Analytics: the ids of handled
  events (bounded, oldest dropped), the ones in flight, counters, and when to continue as new.
"""

from collections.abc import Awaitable, Callable, Iterable
from datetime import timedelta
from typing import Any, Generic, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import FailureError, is_cancelled_exception

from temporal_saga.failures import read_failure
from temporal_saga.metrics import count

with workflow.unsafe.imports_passed_through():
    from activities.deadletters import DeadLetterActivities
    from models.consumers import ConsumerResult, ConsumerStatus, LongLivedState
    from models.deadletters import ConsumerKind, DeliveryTarget, NewDeadLetter, letter_id
    from models.events import OrderEvent

CONSUMER_TIMEOUT = timedelta(seconds=10)
# A consumer's budget: 5 attempts over about 4 s (0.25 s, 0.5 s, 1 s, 2 s between them).
CONSUMER_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=250),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=2),
    maximum_attempts=5,
)
# The dead letter itself is retried until it is stored: it is the record that nothing is lost.
DEAD_LETTER_TIMEOUT = timedelta(seconds=10)
DEAD_LETTER_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=0,
)
DEAD_LETTERS = "dead_letters"
REDRIVE_MEMO = "redrive"

S = TypeVar("S", bound=LongLivedState)
A = TypeVar("A")
R = TypeVar("R")


def job_id(event_id: str, consumer: str) -> str:
    """A job's child workflow id: one per event and consumer (`checkout-o1:OrderConfirmed:receipt`).

    It is also the id of its dead letter.
    """
    return f"{event_id}:{consumer}"


def consumer_call(activity: Callable[[Any, A], Awaitable[R]], arg: A) -> Awaitable[R]:
    """A consumer's one call to its service, with the consumer's budget (CONSUMER_RETRY), as a
    local activity: one workflow task per event, and no activity task."""
    return workflow.execute_local_activity_method(
        activity, arg, start_to_close_timeout=CONSUMER_TIMEOUT, retry_policy=CONSUMER_RETRY
    )


def redrive_number() -> int:
    """n when this job was started by the n-th redrive of its dead letter (memo `redrive`),
    else 0. A memo, not an input: a job's one input is the event."""
    redrive: int = workflow.memo_value(REDRIVE_MEMO, 0, type_hint=int)
    return redrive


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


def job_target(workflow_type: str, event_id: str, consumer: str) -> DeliveryTarget:
    """Where a redrive starts this job again (its canonical id; the task queue it ran on)."""
    return DeliveryTarget(
        kind=ConsumerKind.JOB,
        workflow_type=workflow_type,
        workflow_id=job_id(event_id, consumer),
        task_queue=workflow.info().task_queue,
    )


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


class LongLivedConsumer(Generic[S]):
    """Dedup and bookkeeping of a long-lived consumer workflow, carried by continue-as-new.

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
