"""The saga helper on the time-skipping test server: order, retries, cancellation."""

import asyncio
import uuid

from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from tests.trip_saga import JOURNAL, TripBooking, TripOutcome, TripPlan, book, cancel_booking

TASK_QUEUE = "trip-saga-tests"


async def run_trip(
    env: WorkflowEnvironment, plan: TripPlan
) -> tuple[str, WorkflowHandle[TripBooking, TripOutcome]]:
    wf_id = f"trip-{uuid.uuid4()}"
    handle = await env.client.start_workflow(TripBooking.run, plan, id=wf_id, task_queue=TASK_QUEUE)
    return wf_id, handle


def trip_worker(env: WorkflowEnvironment) -> Worker:
    return Worker(
        env.client,
        task_queue=TASK_QUEUE,
        workflows=[TripBooking],
        activities=[book, cancel_booking],
    )


async def wait_for_journal(wf_id: str, entry: str) -> None:
    for _ in range(400):  # 20 s at most
        if entry in JOURNAL[wf_id]:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{entry!r} never appeared; journal: {JOURNAL[wf_id]}")


async def test_all_steps_succeed_nothing_compensated(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    async with trip_worker(time_skipping_env):
        wf_id, handle = await run_trip(time_skipping_env, TripPlan())
        outcome = await handle.result()
    assert outcome.booked == ["flight", "hotel", "car"]
    assert outcome.compensated == []
    assert JOURNAL[wf_id] == ["book:flight", "book:hotel", "book:car"]


async def test_failure_compensates_in_reverse_order(time_skipping_env: WorkflowEnvironment) -> None:
    async with trip_worker(time_skipping_env):
        wf_id, handle = await run_trip(time_skipping_env, TripPlan(fail_at="car"))
        outcome = await handle.result()
    assert outcome.booked == ["flight", "hotel"]
    # The failed step's own compensation runs too: it was registered before the step.
    assert outcome.compensated == ["undo:car", "undo:hotel", "undo:flight"]
    assert JOURNAL[wf_id] == [
        "book:flight",
        "book:hotel",
        "book:car",
        "undo:car",
        "undo:hotel",
        "undo:flight",
    ]


async def test_failing_compensation_is_retried_until_it_succeeds(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    plan = TripPlan(fail_at="car", undo_failures={"hotel": 5})
    async with trip_worker(time_skipping_env):
        wf_id, handle = await run_trip(time_skipping_env, plan)
        outcome = await handle.result()
    assert outcome.compensated == ["undo:car", "undo:hotel", "undo:flight"]
    assert outcome.attempts == {"undo:car": 1, "undo:hotel": 6, "undo:flight": 1}
    journal = JOURNAL[wf_id]
    assert journal.count("undo:hotel:failed") == 5
    # Later compensations wait for the stuck one: order is kept.
    assert journal.index("undo:flight") > journal.index("undo:hotel")


async def test_cancel_during_compensation_does_not_stop_it(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    plan = TripPlan(fail_at="car", undo_failures={"hotel": 3})
    async with trip_worker(time_skipping_env):
        wf_id, handle = await run_trip(time_skipping_env, plan)
        await wait_for_journal(wf_id, "undo:hotel:failed")
        # Two cancels while the hotel's undo is between attempts.
        await handle.cancel()
        await asyncio.sleep(0.2)
        await handle.cancel()
        outcome = await handle.result()
    assert outcome.compensated == ["undo:car", "undo:hotel", "undo:flight"]
    assert JOURNAL[wf_id][-2:] == ["undo:hotel", "undo:flight"]


async def test_cancel_during_a_step_compensates_what_was_done(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    async with trip_worker(time_skipping_env):
        wf_id, handle = await run_trip(time_skipping_env, TripPlan(block_at="hotel"))
        await wait_for_journal(wf_id, "book:hotel")
        await handle.cancel()
        outcome = await handle.result()
    assert outcome.cancelled
    assert outcome.booked == ["flight"]
    assert outcome.compensated == ["undo:hotel", "undo:flight"]
    assert "book:car" not in JOURNAL[wf_id]


async def test_parallel_compensation_does_not_wait_for_a_slow_one(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    plan = TripPlan(fail_at="car", undo_failures={"hotel": 2}, parallel=True)
    async with trip_worker(time_skipping_env):
        wf_id, handle = await run_trip(time_skipping_env, plan)
        outcome = await handle.result()
    assert sorted(outcome.compensated) == ["undo:car", "undo:flight", "undo:hotel"]
    journal = JOURNAL[wf_id]
    # In parallel, the flight's undo finished while the hotel's was still failing.
    assert journal.index("undo:flight") < journal.index("undo:hotel")
    assert outcome.status == "COMPENSATED"


async def test_continue_with_error_runs_the_rest_and_reports_the_failure(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    plan = TripPlan(fail_at="car", undo_broken="hotel", continue_with_error=True)
    async with trip_worker(time_skipping_env):
        wf_id, handle = await run_trip(time_skipping_env, plan)
        outcome = await handle.result()
    assert outcome.compensated == ["undo:car", "undo:flight"]
    assert outcome.failed == ["undo:hotel"]
    assert outcome.status == "COMPENSATION_FAILED"
    assert JOURNAL[wf_id][-2:] == ["undo:hotel:broken", "undo:flight"]
