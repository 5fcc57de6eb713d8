"""Steps run together (Group), on a real dev server: a member that fails for good while the
others still run cancels them, waits for them, and every member that started is compensated
newest first; the group's members show in `status` and the SagaStep search attribute; and a
group declared or called against the rules is refused, naming the rule."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from temporalio import activity, workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from temporal_saga import Group, SagaDefinitionError, SagaResult, SagaWorkflow, Step
from temporal_saga.client import status
from temporal_saga.models import Outcome, SagaProgress
from temporal_saga.worker import saga_worker
from tests.support.composed_sagas import ACTIVITIES, LEDGER, SAGAS, GroupedBooking, Plan
from tests.support.polling import eventually

TASK_QUEUE = "group-tests"
RESULT_SECONDS = 60


@pytest.fixture(scope="module")
async def client(dev_env: WorkflowEnvironment) -> AsyncIterator[Client]:
    async with saga_worker(
        dev_env.client, task_queue=TASK_QUEUE, sagas=SAGAS, activities=ACTIVITIES
    ):
        yield dev_env.client


async def start(client: Client, **plan: Any) -> tuple[Plan, WorkflowHandle[Any, Any]]:
    request = Plan(plan_id=uuid.uuid4().hex[:10], **plan)
    handle = await client.start_workflow(
        GroupedBooking.run, request, id=f"grouped-{request.plan_id}", task_queue=TASK_QUEUE
    )
    return request, handle


async def result_of(handle: WorkflowHandle[Any, Any]) -> SagaResult:
    return SagaResult.model_validate(
        await asyncio.wait_for(handle.result(), timeout=RESULT_SECONDS)
    )


async def test_a_member_failing_cancels_the_others_and_every_started_member_is_undone(
    client: Client,
) -> None:
    plan, handle = await start(client, refuse=["book_c"], slow={"book_b": 20, "book_d": 20})
    result = await result_of(handle)
    assert (result.status, result.failed_step, result.reason_code) == (
        Outcome.REJECTED,
        "c",
        "book_c_refused",
    )
    # The others were cancelled (they heartbeat, so the cancel reaches them).
    await eventually(
        lambda: _in_ledger(plan, "cancelled book_b", "cancelled book_d"), "b and d cancelled"
    )
    # Every member that started is undone, finished or not, newest registration first: the
    # group's members (registered in the order of the call: d, b, c), then what came before.
    undos = [what for what in LEDGER[plan.plan_id] if what.startswith(("cancel_", "release"))]
    assert undos == ["cancel_c", "cancel_b", "cancel_d", "release"]
    assert result.compensations_done == ["cancel_c", "cancel_b", "cancel_d", "release"]
    assert result.steps_done == ["hold"]
    history = await handle.fetch_history()
    cancel_requests = [
        e
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED
    ]
    assert len(cancel_requests) == 2
    # Each step's and each compensation's activity names itself in the Web UI.
    # (through the codec, as the Web UI shows it with the codec server).
    summaries = await client.data_converter.decode(
        [
            e.user_metadata.summary
            for e in history.events
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        ]
    )
    assert "step b (group together)" in summaries
    assert "undo c: cancel_c, attempt 1" in summaries


async def test_a_group_runs_its_members_at_once_and_shows_each(client: Client) -> None:
    plan, handle = await start(client, slow={"book_b": 1.5, "book_c": 1.5, "book_d": 1.5})
    progress: SagaProgress[SagaResult] | None = None
    for _ in range(100):  # 10 s at most
        progress = await status(client, handle.id, SagaProgress[SagaResult])
        if len(progress.running) == 3:
            break
        await asyncio.sleep(0.1)
    assert progress is not None and progress.running == ["d", "b", "c"]
    result = await result_of(handle)
    assert result.status is Outcome.CONFIRMED
    assert set(result.steps_done) == {"hold", "b", "c", "d", "pay"}
    ledger = LEDGER[plan.plan_id]
    assert ledger[0] == "hold" and ledger[-1] == "pay"
    # Together: the group took about one member's time, not three.
    history = await handle.fetch_history()
    scheduled_by = [
        e.activity_task_scheduled_event_attributes.workflow_task_completed_event_id
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    assert scheduled_by[1] == scheduled_by[2] == scheduled_by[3]  # one workflow task


async def test_cancelling_the_saga_while_its_group_runs_cancels_and_undoes_every_member(
    client: Client,
) -> None:
    plan, handle = await start(client, slow={"book_b": 20, "book_c": 20, "book_d": 0.1})
    for _ in range(100):  # 10 s at most, until b and c alone run
        progress = await status(client, handle.id, SagaProgress[SagaResult])
        if sorted(progress.running) == ["b", "c"]:
            break
        await asyncio.sleep(0.1)
    await handle.cancel()
    result = await result_of(handle)
    assert (result.status, result.reason_code) == (Outcome.REJECTED, "cancelled")
    assert result.compensations_done == ["cancel_c", "cancel_b", "cancel_d", "release"]
    await eventually(
        lambda: _in_ledger(plan, "cancelled book_b", "cancelled book_c"), "b and c cancelled"
    )
    assert "book_b" not in LEDGER[plan.plan_id] and "book_c" not in LEDGER[plan.plan_id]


async def _in_ledger(plan: Plan, *what: str) -> bool:
    return set(what) <= set(LEDGER.get(plan.plan_id, []))


# -- misuse, refused with its rule ----------------------------------------------------------


@activity.defn
async def one(arg: str) -> None: ...


@activity.defn
async def two(arg: str) -> None: ...


@activity.defn
async def undo_two(arg: str) -> None: ...


def test_a_group_holding_the_pivot_is_refused() -> None:
    with pytest.raises(SagaDefinitionError, match="group 'both' holds the pivot 'b'"):

        class _Pivoted(SagaWorkflow[str, SagaResult]):
            a = Step(one)
            b = Step(two, pivot=True)
            both = Group(a, b)


def test_a_group_of_one_or_of_foreign_steps_is_refused() -> None:
    with pytest.raises(SagaDefinitionError, match="group 'alone' has 1 member"):

        class _Alone(SagaWorkflow[str, SagaResult]):
            a = Step(one)
            alone = Group(a)

    foreign = Step(two)
    with pytest.raises(SagaDefinitionError, match="is not a step declared on this saga"):

        class _Foreign(SagaWorkflow[str, SagaResult]):
            a = Step(one)
            both = Group(a, foreign)


def test_a_step_in_two_groups_is_refused() -> None:
    with pytest.raises(SagaDefinitionError, match="step 'b' is in group 'first' and in group"):

        class _Twice(SagaWorkflow[str, SagaResult]):
            a = Step(one)
            b = Step(two, undo=undo_two)
            c = Step(one)
            first = Group(a, b)
            second = Group(b, c)


@workflow.defn(name="MemberAlone")
class MemberAlone(SagaWorkflow[str, SagaResult]):
    a = Step(one, start_to_close_timeout=timedelta(seconds=5))
    b = Step(two, undo=undo_two, start_to_close_timeout=timedelta(seconds=5))
    both = Group(a, b)

    @workflow.run
    async def run(self, arg: str) -> SagaResult:
        return await self.run_saga(self.steps(arg))

    async def steps(self, arg: str) -> None:
        await self.b(arg)  # a member run on its own


@workflow.defn(name="GroupHalfCalled")
class GroupHalfCalled(SagaWorkflow[str, SagaResult]):
    a = Step(one, start_to_close_timeout=timedelta(seconds=5))
    b = Step(two, undo=undo_two, start_to_close_timeout=timedelta(seconds=5))
    both = Group(a, b)

    @workflow.run
    async def run(self, arg: str) -> SagaResult:
        return await self.run_saga(self.steps(arg))

    async def steps(self, arg: str) -> None:
        await self.both(self.a(arg), self.a(arg))


@pytest.mark.parametrize(
    ("saga", "words"),
    [
        (MemberAlone, "step 'b' is a member of the group 'both': run it with its group"),
        (GroupHalfCalled, "group 'both' runs its members a, b together, each once"),
    ],
)
async def test_a_group_called_against_the_rules_fails_the_saga_naming_it(
    time_skipping_env: WorkflowEnvironment, saga: type[SagaWorkflow[str, SagaResult]], words: str
) -> None:
    client = time_skipping_env.client
    queue = f"group-misuse-{uuid.uuid4().hex[:6]}"
    async with saga_worker(client, task_queue=queue, sagas=[saga], activities=[one, two, undo_two]):
        handle = await client.start_workflow(saga.run, "x", id=f"misuse-{queue}", task_queue=queue)
        with pytest.raises(Exception) as failed:
            await asyncio.wait_for(handle.result(), timeout=RESULT_SECONDS)
    assert words in str(failed.value.__cause__)
