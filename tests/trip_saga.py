"""A small saga workflow (a trip booking) that exercises workflows.saga in tests.

Its activities write to JOURNAL, keyed by workflow id, so a test can see what ran and when.
"""

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception

from workflows.saga import CompensationPolicy, Saga

STEPS = ("flight", "hotel", "car")
JOURNAL: dict[str, list[str]] = defaultdict(list)


@dataclass
class TripPlan:
    fail_at: str | None = None
    # A step whose action waits (heartbeating) until the activity is cancelled.
    block_at: str | None = None
    # Compensation name -> how many times it fails before it succeeds.
    undo_failures: dict[str, int] = field(default_factory=dict)
    # A step whose compensation fails for good (non-retryable).
    undo_broken: str | None = None
    parallel: bool = False
    continue_with_error: bool = False


@dataclass
class StepCall:
    step: str
    plan: TripPlan


@dataclass
class TripOutcome:
    booked: list[str]
    compensated: list[str]
    attempts: dict[str, int]
    cancelled: bool
    failed: list[str]
    status: str


@activity.defn
async def book(call: StepCall) -> None:
    wf_id = activity.info().workflow_id or ""
    JOURNAL[wf_id].append(f"book:{call.step}")
    if call.plan.fail_at == call.step:
        raise ApplicationError(f"no {call.step} available", type="Unavailable", non_retryable=True)
    if call.plan.block_at == call.step:
        for _ in range(600):  # bounded: 60 s at most
            activity.heartbeat()
            await asyncio.sleep(0.1)
        raise ApplicationError("never cancelled", non_retryable=True)


@activity.defn
async def cancel_booking(call: StepCall) -> None:
    wf_id = activity.info().workflow_id or ""
    name = f"undo:{call.step}"
    if call.plan.undo_broken == call.step:
        JOURNAL[wf_id].append(f"{name}:broken")
        raise ApplicationError(f"{call.step} cannot be undone", non_retryable=True)
    failures_so_far = JOURNAL[wf_id].count(f"{name}:failed")
    if failures_so_far < call.plan.undo_failures.get(call.step, 0):
        JOURNAL[wf_id].append(f"{name}:failed")
        raise ApplicationError(f"{call.step} provider down", type="ProviderDown")
    JOURNAL[wf_id].append(name)


@workflow.defn
class TripBooking:
    @workflow.run
    async def run(self, plan: TripPlan) -> TripOutcome:
        saga = Saga(
            policy=CompensationPolicy(initial_backoff=timedelta(seconds=2)),
            parallel=plan.parallel,
            continue_with_error=plan.continue_with_error,
        )
        cancelled = False
        try:
            for step in STEPS:
                await saga.step(
                    step,
                    lambda step=step: workflow.execute_activity(  # type: ignore[misc]
                        book,
                        StepCall(step, plan),
                        start_to_close_timeout=timedelta(seconds=90),
                        heartbeat_timeout=timedelta(seconds=2),
                        retry_policy=RetryPolicy(maximum_attempts=1),
                    ),
                    compensation_name=f"undo:{step}",
                    compensation=lambda step=step: workflow.execute_activity(  # type: ignore[misc]
                        cancel_booking,
                        StepCall(step, plan),
                        start_to_close_timeout=timedelta(seconds=10),
                        # One attempt per call: the saga's own loop retries it.
                        retry_policy=RetryPolicy(maximum_attempts=1),
                    ),
                )
        except BaseException as err:
            if not (isinstance(err, ActivityError) or is_cancelled_exception(err)):
                raise
            cancelled = is_cancelled_exception(err)
            await saga.compensate()
        return TripOutcome(
            booked=saga.steps_done,
            compensated=saga.compensations_done,
            attempts={record.name: record.attempts for record in saga.compensations},
            cancelled=cancelled,
            failed=[r.name for r in saga.compensations if r.state.value == "FAILED"],
            status=saga.status.value,
        )
