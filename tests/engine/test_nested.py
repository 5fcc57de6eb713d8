"""Nested sagas (ChildSaga) on a real dev server: the parent Journey holds, runs the nested
saga Legs (two legs, no pivot), checks, then pays (its pivot).

- confirmed: the child's work stands once the parent's pivot succeeded;
- the parent fails after the child finished its steps: the child is undone as part of the
  parent's rollback, newest first across both;
- the parent cancelled while its child runs: the cancel reaches the child;
- the child refuses a leg: it undoes itself and the parent's step fails with its reason;
- the child's compensation stuck: the parent's status says it waits for it, `attention list`
  lists the child, `attention retry` through the CLI lets both finish;
- the child cannot be cancelled on its own once its steps are done (its parent decides);
- a parent terminated while its child waits is settled by the reconciler's sweep, child too.
"""

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from temporal_saga import ChildSaga, SagaDefinitionError, SagaResult, SagaWorkflow, Step
from temporal_saga.client import status, sweep_now
from temporal_saga.models import (
    CancelSaga,
    CompensationState,
    Outcome,
    SagaProgress,
    SagaStatus,
    SweepRequest,
)
from temporal_saga.worker import SagaWiringError, saga_worker
from tests.support.cli import run_cli
from tests.support.composed_sagas import (
    ACTIVITIES,
    DO,
    HEALED,
    LEDGER,
    SAGAS,
    Journey,
    Legs,
    Plan,
)
from tests.support.polling import eventually
from worker.settings import Settings

TASK_QUEUE = "nested-tests"
RESULT_SECONDS = 60
Handle = WorkflowHandle[Any, Any]


@pytest.fixture(scope="module")
async def client(dev_env: WorkflowEnvironment) -> AsyncIterator[Client]:
    async with saga_worker(
        dev_env.client, task_queue=TASK_QUEUE, sagas=SAGAS, activities=ACTIVITIES
    ):
        yield dev_env.client


async def start(client: Client, **plan: Any) -> tuple[Plan, Handle, Handle]:
    request = Plan(plan_id=uuid.uuid4().hex[:10], **plan)
    parent_id = f"journey-{request.plan_id}"
    parent = await client.start_workflow(Journey.run, request, id=parent_id, task_queue=TASK_QUEUE)
    return request, parent, client.get_workflow_handle(f"{parent_id}/legs")


async def result_of(handle: Handle) -> SagaResult:
    return SagaResult.model_validate(
        await asyncio.wait_for(handle.result(), timeout=RESULT_SECONDS)
    )


async def progress(client: Client, handle: Handle) -> SagaProgress[SagaResult]:
    return await status(client, handle.id, SagaProgress[SagaResult])


async def until_status(client: Client, handle: Handle, wanted: SagaStatus) -> None:
    async def reached() -> bool:
        try:
            return (await progress(client, handle)).status is wanted
        except Exception:  # not started yet
            return False

    await eventually(reached, f"{handle.id} {wanted.value}")


async def test_the_childs_work_stands_once_the_parent_confirms(client: Client) -> None:
    plan, parent, child = await start(client)
    assert (await result_of(parent)).status is Outcome.CONFIRMED
    child_result = await result_of(child)
    assert child_result.status is Outcome.CONFIRMED
    assert child_result.steps_done == ["leg_one", "leg_two"]
    assert LEDGER[plan.plan_id] == ["hold", "leg_one", "leg_two", "check", "pay"]
    # The parent waited for the child's last news: its status says the child confirmed.
    [state] = (await progress(client, parent)).children
    assert (state.workflow_id, state.status) == (child.id, SagaStatus.CONFIRMED)


async def test_the_parents_rollback_undoes_the_child_after_it_finished_its_steps(
    client: Client,
) -> None:
    plan, parent, child = await start(client, refuse=["pay"])
    result = await result_of(parent)
    assert (result.status, result.failed_step, result.reason_code) == (
        Outcome.REJECTED,
        "pay",
        "pay_refused",
    )
    child_result = await result_of(child)
    assert (child_result.status, child_result.reason_code) == (
        Outcome.REJECTED,
        "parent_compensated",
    )
    # Newest first across both: the child's legs (its own order), then the parent's hold.
    assert LEDGER[plan.plan_id] == [
        "hold",
        "leg_one",
        "leg_two",
        "check",
        "refused pay",
        "undo_leg_two",
        "undo_leg_one",
        "release",
    ]
    assert result.compensations_done == ["legs", "release"]


async def test_a_cancel_of_the_parent_reaches_its_running_child(client: Client) -> None:
    plan, parent, child = await start(client, slow={"leg_two": 20})
    await eventually(
        lambda: _has(plan, "leg_one"), "the child's first leg done", seconds=RESULT_SECONDS
    )
    await parent.cancel()
    result = await result_of(parent)
    assert (result.status, result.reason_code, result.failed_step) == (
        Outcome.REJECTED,
        "cancelled",
        "legs",
    )
    child_result = await result_of(child)
    assert (child_result.status, child_result.reason_code) == (
        Outcome.REJECTED,
        "parent_compensated",
    )
    # The running leg is cancelled (when its heartbeat learns it) and undone all the same.
    ledger = [what for what in LEDGER[plan.plan_id] if not what.startswith("cancelled")]
    assert ledger == ["hold", "leg_one", "undo_leg_two", "undo_leg_one", "release"]


async def test_a_child_that_refuses_undoes_itself_and_fails_the_parents_step(
    client: Client,
) -> None:
    plan, parent, child = await start(client, refuse=["leg_two"])
    result = await result_of(parent)
    assert (result.status, result.failed_step, result.reason_code) == (
        Outcome.REJECTED,
        "legs",
        "leg_two_refused",
    )
    assert (await result_of(child)).reason_code == "leg_two_refused"
    assert LEDGER[plan.plan_id] == [
        "hold",
        "leg_one",
        "refused leg_two",
        "undo_leg_two",
        "undo_leg_one",
        "release",
    ]


async def test_a_childs_stuck_compensation_is_shown_by_its_parent_and_retried_through_the_cli(
    dev_env: WorkflowEnvironment, client: Client
) -> None:
    plan, parent, child = await start(client, refuse=["pay"], stuck=["undo_leg_one"])
    await until_status(client, child, SagaStatus.NEEDS_ATTENTION)

    async def parent_shows_it() -> bool:
        reports = (await progress(client, parent)).compensations
        legs = next((r for r in reports if r.name == "legs"), None)
        return legs is not None and "NEEDS_ATTENTION (undo_leg_one stuck)" in (
            legs.waiting_for or ""
        )

    await eventually(parent_shows_it, "the parent's status names its stuck child")
    parent_progress = await progress(client, parent)
    assert parent_progress.status is SagaStatus.COMPENSATING
    assert parent_progress.children[0].stuck == ["undo_leg_one"]
    # Both pages say so: the child's with the command that retries it (the Temporal CLI's:
    # Legs names no command of its own), the parent's naming its stuck child.
    child_page = await page_of(child)
    assert "**Needs attention**: compensation `undo_leg_one` is stuck after" in child_page
    assert (
        f"`temporal workflow update execute --workflow-id {child.id} --name retry_compensation "
        """--input '"undo_leg_one"'`"""
    ) in child_page
    parent_page = await page_of(parent)
    assert f"Nested saga `{child.id}`: NEEDS_ATTENTION, undo_leg_one stuck" in parent_page
    assert "- legs: RUNNING, 1 attempt, waits for nested saga" in parent_page
    # Retrying the parent's compensation of the child sends the operator to the child.
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await parent.execute_update("retry_compensation", "legs")
    assert f"waits for the nested saga {child.id}" in str(refused.value.cause)
    settings = Settings(task_queue=TASK_QUEUE)
    # In a thread: the worker runs on this event loop.
    listed = await asyncio.to_thread(run_cli, dev_env, settings, "attention", "list", "--json")
    listed_ids = {json.loads(line)["workflow_id"] for line in listed.stdout.splitlines()}
    assert child.id in listed_ids and parent.id not in listed_ids, listed
    HEALED.add(f"{plan.plan_id}:undo_leg_one")
    retried = await asyncio.to_thread(
        run_cli, dev_env, settings, "attention", "retry", "--workflow-id", child.id,
        "--compensation", "undo_leg_one",
    )  # fmt: skip
    assert retried.returncode == 0, retried.stdout + retried.stderr
    result = await result_of(parent)
    assert result.status is Outcome.REJECTED
    assert [r.state for r in result.compensations] == [CompensationState.DONE] * 2
    child_result = await result_of(child)
    assert child_result.compensations_done == ["undo_leg_two", "undo_leg_one"]
    assert child_result.compensations[1].attempts >= 3


async def test_a_child_waiting_for_its_parent_cannot_be_cancelled_alone(client: Client) -> None:
    plan, parent, child = await start(client, slow={"check": 20})
    await eventually(lambda: _has(plan, "leg_two"), "the child's steps done")
    await eventually(
        lambda: _parent_has_child_ready(client, parent), "the parent running its check"
    )
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await child.execute_update("cancel", CancelSaga())
    assert "its parent decides" in str(refused.value.cause)
    await child.cancel()  # a Temporal cancel of the child is ignored too
    await parent.cancel()  # the parent can: it compensates, and so does the child
    assert (await result_of(parent)).status is Outcome.REJECTED
    assert (await result_of(child)).reason_code == "parent_compensated"
    assert LEDGER[plan.plan_id][-3:] == ["undo_leg_two", "undo_leg_one", "release"]


async def test_a_terminated_parent_is_settled_by_the_sweep_and_so_is_its_child(
    client: Client,
) -> None:
    plan, parent, child = await start(client, slow={"check": 30})
    await eventually(
        lambda: _parent_has_child_ready(client, parent), "the parent running its check"
    )
    await parent.terminate("lost")
    report = await sweep_now(client, SweepRequest(saga_type="Journey"), TASK_QUEUE)
    assert [entry.workflow_id for entry in report.entries] == [parent.id], report
    result = await result_of(client.get_workflow_handle(parent.id))  # the new run
    assert (result.status, result.reason_code) == (Outcome.REJECTED, "cancelled")
    assert (await result_of(child)).reason_code == "parent_compensated"
    assert LEDGER[plan.plan_id][-3:] == ["undo_leg_two", "undo_leg_one", "release"]


async def test_a_terminated_child_is_reset_by_the_sweep_and_takes_its_parents_word(
    client: Client,
) -> None:
    # The check fails after a while: time to terminate the waiting child and sweep it.
    plan, parent, child = await start(client, slow={"check": 8}, refuse=["check"])
    await eventually(
        lambda: _parent_has_child_ready(client, parent), "the parent running its check"
    )
    await child.terminate("lost")
    report = await sweep_now(client, SweepRequest(saga_type="Legs"), TASK_QUEUE)
    assert [entry.workflow_id for entry in report.entries] == [child.id], report
    # The new run waits again for its parent's word (the sweep's cancel is not the parent's),
    # then takes the compensate sent by id.
    result = await result_of(parent)
    assert (result.status, result.failed_step) == (Outcome.REJECTED, "check")
    assert result.compensations_done == ["legs", "release"]
    child_result = await result_of(client.get_workflow_handle(child.id))
    assert child_result.reason_code == "parent_compensated"
    assert LEDGER[plan.plan_id][-3:] == ["undo_leg_two", "undo_leg_one", "release"]


def test_a_nested_saga_with_a_pivot_or_after_the_pivot_is_refused() -> None:
    with pytest.raises(SagaDefinitionError, match="it has a pivot"):
        ChildSaga(Journey)
    with pytest.raises(SagaDefinitionError, match="is a nested saga after the pivot"):

        class _Late(SagaWorkflow[Plan, SagaResult]):
            first = Step(DO["leg_one"], pivot=True)
            legs = ChildSaga(Legs)


def test_a_worker_without_the_nested_saga_is_refused(dev_env: WorkflowEnvironment) -> None:
    with pytest.raises(SagaWiringError, match="runs the nested saga Legs"):
        saga_worker(dev_env.client, task_queue="x", sagas=[Journey], activities=ACTIVITIES)


async def page_of(handle: Handle) -> str:
    """The saga's current details, as the Web UI reads them."""
    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    assert isinstance(metadata, WorkflowMetadata)
    return metadata.current_details


async def _has(plan: Plan, what: str) -> bool:
    return what in LEDGER.get(plan.plan_id, [])


async def _parent_has_child_ready(client: Client, parent: Handle) -> bool:
    return (await progress(client, parent)).current_step == "check"
