"""The saga engine's rules on the time-skipping server, with a three-step test saga: order,
retries, cancellation, parallel compensation, continue-with-error, misuse; and the
declaration checks made when a saga class is made."""

import asyncio
import re
import types
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity, workflow
from temporalio.client import WorkflowFailureError, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from temporal_saga import (
    CompensationPolicy,
    SagaDefinitionError,
    SagaOptions,
    SagaWorkflow,
    Step,
)
from temporal_saga.models import CancelSaga, CompensationState, Outcome, SagaProgress, SagaResult

TASK_QUEUE = "saga-engine-tests"
JOURNAL: dict[str, list[str]] = defaultdict(list)
Progress = SagaProgress[SagaResult]


@dataclass
class Plan:
    fail_at: str | None = None
    # A step whose action waits (heartbeating) until it is cancelled.
    block_at: str | None = None
    # Step -> how many times its undo fails before it succeeds.
    undo_failures: dict[str, int] = field(default_factory=dict)
    # A step whose undo fails for good (non-retryable).
    undo_broken: str | None = None
    parallel: bool = False
    continue_with_error: bool = False
    # Misuse: run step "a" a second time.
    run_a_twice: bool = False
    # The saga's first backoff between two calls of a failing compensation.
    backoff_seconds: float = 2.0


@dataclass
class Call:
    step: str
    plan: Plan


@activity.defn
async def act(call: Call) -> str:
    wf_id = activity.info().workflow_id or ""
    JOURNAL[wf_id].append(f"do:{call.step}")
    if call.plan.fail_at == call.step:
        raise ApplicationError(f"no {call.step} today", type="unavailable", non_retryable=True)
    if call.plan.block_at == call.step:
        for _ in range(600):  # bounded: 60 s at most
            activity.heartbeat()
            await asyncio.sleep(0.1)
        raise ApplicationError("never cancelled", non_retryable=True)
    return call.step


@activity.defn
async def undo(call: Call) -> None:
    wf_id = activity.info().workflow_id or ""
    name = f"undo:{call.step}"
    if call.plan.undo_broken == call.step:
        JOURNAL[wf_id].append(f"{name}:broken")
        raise ApplicationError(f"{call.step} cannot be undone", non_retryable=True)
    if JOURNAL[wf_id].count(f"{name}:failed") < call.plan.undo_failures.get(call.step, 0):
        JOURNAL[wf_id].append(f"{name}:failed")
        raise ApplicationError(f"{call.step} provider down", type="provider_down")
    JOURNAL[wf_id].append(name)


def _step(name: str) -> Step[Call, str, Call]:
    return Step(
        act,
        undo=undo,
        undo_name=f"undo_{name}",
        heartbeat_timeout=timedelta(seconds=2),
        retry_policy=RetryPolicy(maximum_attempts=1),
        start_to_close_timeout=timedelta(seconds=90),
    )


@workflow.defn
class ThreeSteps(SagaWorkflow[Plan, SagaResult]):
    a = _step("a")
    b = _step("b")
    c = _step("c")

    @workflow.init
    def __init__(self, plan: Plan) -> None:
        super().__init__(
            plan,
            SagaOptions(
                compensation=CompensationPolicy(
                    initial_backoff=timedelta(seconds=plan.backoff_seconds),
                    attempts_before_attention=None,
                    parallel=plan.parallel,
                    continue_with_error=plan.continue_with_error,
                ),
                compensation_retry=RetryPolicy(maximum_attempts=1),
            ),
        )

    @workflow.run
    async def run(self, plan: Plan) -> SagaResult:
        return await self.run_saga(self.go(plan))

    async def go(self, plan: Plan) -> None:
        for name, step in (("a", self.a), ("b", self.b), ("c", self.c)):
            await step(Call(name, plan), undo_arg=Call(name, plan))
            if plan.run_a_twice and name == "b":
                await self.a(Call("a", plan), undo_arg=Call("a", plan))


@workflow.defn
class WithPivot(SagaWorkflow[Plan, SagaResult]):
    a = _step("a")
    pay = Step(act, pivot=True, heartbeat_timeout=timedelta(seconds=2))

    @workflow.init
    def __init__(self, plan: Plan) -> None:
        super().__init__(plan)

    @workflow.run
    async def run(self, plan: Plan) -> SagaResult:
        return await self.run_saga(self.go(plan))

    async def go(self, plan: Plan) -> None:
        await self.a(Call("a", plan), undo_arg=Call("a", plan))
        await self.pay(Call("pay", plan))


@pytest.fixture(scope="module")  # one worker for the module: starting one takes most of a second
async def env(time_skipping_env: WorkflowEnvironment) -> Any:
    async with Worker(
        time_skipping_env.client,
        task_queue=TASK_QUEUE,
        workflows=[ThreeSteps, WithPivot],
        activities=[act, undo],
    ):
        yield time_skipping_env


async def start(
    env: WorkflowEnvironment, plan: Plan, saga: type[ThreeSteps] | type[WithPivot] = ThreeSteps
) -> tuple[str, WorkflowHandle[Any, SagaResult]]:
    wf_id = f"engine-{uuid.uuid4()}"
    handle = await env.client.start_workflow(saga.run, plan, id=wf_id, task_queue=TASK_QUEUE)
    return wf_id, handle


async def wait_for_journal(wf_id: str, entry: str) -> None:
    for _ in range(400):  # 20 s at most
        if entry in JOURNAL[wf_id]:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{entry!r} never appeared; journal: {JOURNAL[wf_id]}")


async def test_all_steps_succeed_nothing_compensated(env: WorkflowEnvironment) -> None:
    wf_id, handle = await start(env, Plan())
    result = await handle.result()
    assert result.status is Outcome.CONFIRMED  # no pivot: decided when the steps are done
    assert result.steps_done == ["a", "b", "c"]
    assert result.compensations == []
    assert JOURNAL[wf_id] == ["do:a", "do:b", "do:c"]


async def test_failure_compensates_in_reverse_order(env: WorkflowEnvironment) -> None:
    wf_id, handle = await start(env, Plan(fail_at="c"))
    result = await handle.result()
    assert (result.status, result.failed_step, result.reason_code) == (
        Outcome.REJECTED,
        "c",
        "unavailable",
    )
    assert result.steps_done == ["a", "b"]
    # The failed step's own undo runs too: it was registered before the step.
    assert result.compensations_done == ["undo_c", "undo_b", "undo_a"]
    assert JOURNAL[wf_id][-3:] == ["undo:c", "undo:b", "undo:a"]


async def test_failing_compensation_is_retried_until_it_succeeds(
    env: WorkflowEnvironment,
) -> None:
    wf_id, handle = await start(env, Plan(fail_at="c", undo_failures={"b": 5}))
    result = await handle.result()
    assert result.compensations_done == ["undo_c", "undo_b", "undo_a"]
    assert {r.name: r.attempts for r in result.compensations} == {
        "undo_c": 1,
        "undo_b": 6,
        "undo_a": 1,
    }
    journal = JOURNAL[wf_id]
    assert journal.count("undo:b:failed") == 5
    # Later compensations wait for the failing one: the order is kept.
    assert journal.index("undo:a") > journal.index("undo:b")


async def test_temporal_cancel_twice_during_compensation_does_not_stop_it(
    env: WorkflowEnvironment,
) -> None:
    wf_id, handle = await start(env, Plan(fail_at="c", undo_failures={"b": 3}))
    await wait_for_journal(wf_id, "undo:b:failed")
    await handle.cancel()
    await asyncio.sleep(0.2)
    await handle.cancel()
    result = await handle.result()
    assert result.compensations_done == ["undo_c", "undo_b", "undo_a"]
    assert JOURNAL[wf_id][-2:] == ["undo:b", "undo:a"]


async def test_temporal_cancel_during_a_step_compensates_what_was_done(
    env: WorkflowEnvironment,
) -> None:
    wf_id, handle = await start(env, Plan(block_at="b"))
    await wait_for_journal(wf_id, "do:b")
    await handle.cancel()
    result = await handle.result()
    assert (result.status, result.reason_code, result.failed_step) == (
        Outcome.REJECTED,
        "cancelled",
        "b",
    )
    assert result.steps_done == ["a"]
    assert result.compensations_done == ["undo_b", "undo_a"]
    assert "do:c" not in JOURNAL[wf_id]


async def test_parallel_compensation_does_not_wait_for_a_slow_one(
    env: WorkflowEnvironment,
) -> None:
    plan = Plan(fail_at="c", undo_failures={"b": 2}, parallel=True, backoff_seconds=0.1)
    wf_id, handle = await start(env, plan)
    result = await handle.result()
    assert sorted(result.compensations_done) == ["undo_a", "undo_b", "undo_c"]
    journal = JOURNAL[wf_id]
    # In parallel, a's undo finished while b's was still failing.
    assert journal.index("undo:a") < journal.index("undo:b")


async def test_continue_with_error_runs_the_rest_and_reports_the_failure(
    env: WorkflowEnvironment,
) -> None:
    wf_id, handle = await start(env, Plan(fail_at="c", undo_broken="b", continue_with_error=True))
    result = await handle.result()
    assert result.compensations_done == ["undo_c", "undo_a"]
    states = {r.name: r.state for r in result.compensations}
    assert states["undo_b"] is CompensationState.FAILED
    assert JOURNAL[wf_id][-2:] == ["undo:b:broken", "undo:a"]


async def test_a_step_run_twice_fails_the_workflow_after_compensating(
    env: WorkflowEnvironment,
) -> None:
    wf_id, handle = await start(env, Plan(run_a_twice=True))
    with pytest.raises(WorkflowFailureError) as failed:
        await handle.result()
    assert "step 'a' ran twice" in str(failed.value.cause)
    # What was done is undone first: nothing is left half-done by a bug.
    assert JOURNAL[wf_id][-2:] == ["undo:b", "undo:a"]
    progress = await handle.query(ThreeSteps.status)
    assert progress.decision is not None and progress.decision.reason_code == "saga_misuse"


async def test_cancel_is_refused_from_the_pivot_on_and_a_temporal_cancel_ignored(
    env: WorkflowEnvironment,
) -> None:
    wf_id, handle = await start(env, Plan(block_at="pay"), saga=WithPivot)
    await wait_for_journal(wf_id, "do:pay")
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(WithPivot.cancel, CancelSaga(reason="too late"))
    assert "too late to cancel" in str(refused.value.cause)
    await handle.cancel()  # ignored: the pivot runs to the end, nothing is undone
    progress = await handle.query(WithPivot.status)
    assert progress.status == "RUNNING" and progress.current_step == "pay"
    assert "undo:a" not in JOURNAL[wf_id]
    # Its blocked activity would hold the server's clock for the tests after this one.
    await handle.terminate()


async def test_status_query_has_the_saga_types(env: WorkflowEnvironment) -> None:
    _, handle = await start(env, Plan(fail_at="b"))
    await handle.result()
    progress = await handle.query(ThreeSteps.status)
    assert isinstance(progress, SagaProgress)
    assert isinstance(progress.decision, SagaResult)
    assert progress.status == "REJECTED" and progress.stuck == []
    assert [(r.name, r.state) for r in progress.compensations] == [
        ("undo_b", CompensationState.DONE),
        ("undo_a", CompensationState.DONE),
    ]


# -- declarations, checked when the class is made ------------------------------------------


def test_two_pivots_are_refused_when_the_class_is_made() -> None:
    with pytest.raises(SagaDefinitionError, match="one pivot step at most; found pay, ship"):

        class TwoPivots(SagaWorkflow[Plan, SagaResult]):
            pay = Step(act, pivot=True)
            ship = Step(act, pivot=True)


def test_an_undo_after_the_pivot_is_refused() -> None:
    with pytest.raises(SagaDefinitionError, match="comes after the pivot 'pay' and has an undo"):

        class UndoAfterPivot(SagaWorkflow[Plan, SagaResult]):
            pay = Step(act, pivot=True)
            late = _step("late")


def test_a_step_after_the_pivot_must_retry_until_done() -> None:
    with pytest.raises(SagaDefinitionError, match="maximum_attempts=0"):

        class GivesUp(SagaWorkflow[Plan, SagaResult]):
            pay = Step(act, pivot=True)
            ship = Step(act, retry_policy=RetryPolicy(maximum_attempts=3))


def test_two_steps_with_one_compensation_name_are_refused() -> None:
    with pytest.raises(SagaDefinitionError, match="both have the compensation 'undo'"):

        class SameUndo(SagaWorkflow[Plan, SagaResult]):
            a = Step(act, undo=undo)
            b = Step(act, undo=undo)


@pytest.mark.parametrize("name", ["status", "cancel", "decision", "input", "run_saga"])
def test_a_step_may_not_hide_the_engine(name: str) -> None:
    with pytest.raises(SagaDefinitionError, match=f"step '{name}' hides the saga's own"):
        types.new_class(
            "Hides",
            (SagaWorkflow[Plan, SagaResult],),
            exec_body=lambda namespace: namespace.update({name: Step(act)}),
        )


# -- the engine holds what every saga needs; a saga holds only its business ------------------

ROOT = Path(__file__).parents[2]
ENGINE = sorted((ROOT / "engine" / "temporal_saga").glob("*.py"))
SAGAS = [ROOT / "workflows" / "checkout.py", ROOT / "examples" / "trip" / "workflow.py"]


@pytest.mark.parametrize("path", ENGINE, ids=lambda p: p.name)
def test_the_engine_names_no_saga_of_its_own(path: Path) -> None:
    text = re.sub(r"round trip", "", path.read_text(), flags=re.IGNORECASE)
    assert not re.findall(r"\b(checkout|trip)\w*", text, flags=re.IGNORECASE)


@pytest.mark.parametrize("path", SAGAS, ids=lambda p: p.parent.name)
def test_a_saga_writes_no_handler_search_attribute_or_timer(path: Path) -> None:
    text = path.read_text()
    for engine_only in ("@workflow.update", "@workflow.query", "@workflow.signal"):
        assert engine_only not in text
    for engine_only in ("upsert_search_attributes", "workflow.sleep", "wait_condition"):
        assert engine_only not in text
