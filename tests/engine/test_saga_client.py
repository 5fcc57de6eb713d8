"""The engine's client side when a saga cannot answer or has ended: `status` of a closed run
(Temporal's execution status, the reconciler's repair, a query nobody answers), `decide` of a
saga that ended without a decision (SagaEnded), and `checkout-saga attention list` with a
saga whose status query fails beside one that answers.

`status` runs on the time-skipping server; `decide` (update-with-start) and the listing (a
visibility query, the real CLI) need the dev server.
"""

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from temporalio import activity, workflow
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from temporal_saga import CompensationPolicy, SagaOptions, SagaWorkflow, Step
from temporal_saga.client import SagaEnded, decide, needing_attention, status
from temporal_saga.codec import CODEC_KEYS_ENV, data_converter, format_keys, new_key
from temporal_saga.models import (
    AbandonedSaga,
    Outcome,
    RepairResult,
    RunStatus,
    SagaProgress,
    SagaResult,
    SagaRun,
    SagaStatus,
)
from temporal_saga.reconcile import NEEDS_ATTENTION_QUERY, repair_workflow_id
from tests.support.cli import run_cli
from tests.support.polling import eventually
from worker.settings import Settings

TASK_QUEUE = "saga-client-tests"
# Sagas whose worker is stopped once they are where the test wants them.
ENCRYPTED_QUEUE = "saga-client-encrypted"
GONE_QUEUE = "saga-client-tests-gone"
Progress = SagaProgress[SagaResult]


@dataclass
class Plan:
    # The step whose action waits (heartbeating) until it is cancelled: "a" holds the saga
    # before its decision, "ship" after it (the pivot "pay" decided it).
    hold: str | None = None
    # The step refused for good (non-retryable).
    refuse: str | None = None
    # The undo of "a" fails every time: with one attempt before attention, the saga is stuck.
    undo_broken: bool = False


@dataclass
class Call:
    step: str
    plan: Plan


@activity.defn
async def work(call: Call) -> str:
    if call.plan.refuse == call.step:
        raise ApplicationError(f"{call.step} refused", type="refused", non_retryable=True)
    if call.plan.hold == call.step:
        for _ in range(600):  # bounded: 60 s at most, unless cancelled
            activity.heartbeat()
            await asyncio.sleep(0.1)
        raise ApplicationError("never cancelled", non_retryable=True)
    return call.step


@activity.defn
async def undo_work(call: Call) -> None:
    if call.plan.undo_broken:
        raise ApplicationError(f"undo of {call.step}: provider down", type="provider_down")


ONCE = RetryPolicy(maximum_attempts=1)
OPTIONS = SagaOptions(
    compensation=CompensationPolicy(
        initial_backoff=timedelta(milliseconds=100), attempts_before_attention=1
    ),
    compensation_retry=ONCE,
)


@workflow.defn(name="ClientTestSaga")
class HeldSaga(SagaWorkflow[Plan, SagaResult]):
    a = Step(
        work,
        undo=undo_work,
        undo_name="undo_a",
        heartbeat_timeout=timedelta(seconds=2),
        retry_policy=ONCE,
    )
    pay = Step(work, pivot=True, heartbeat_timeout=timedelta(seconds=2))
    ship = Step(work, heartbeat_timeout=timedelta(seconds=2))

    @workflow.init
    def __init__(self, plan: Plan) -> None:
        super().__init__(plan, OPTIONS)

    @workflow.run
    async def run(self, plan: Plan) -> SagaResult:
        return await self.run_saga(self.go(plan))

    async def go(self, plan: Plan) -> None:
        await self.a(Call("a", plan))
        await self.pay(Call("pay", plan))
        await self.ship(Call("ship", plan))


@workflow.defn(name="ClientTestBrokenStatus")
class BrokenStatusSaga(HeldSaga):
    """The same saga, whose `status` query raises."""

    @workflow.init
    def __init__(self, plan: Plan) -> None:
        super().__init__(plan)

    @workflow.run
    async def run(self, plan: Plan) -> SagaResult:
        return await self.run_saga(self.go(plan))

    @workflow.query
    def status(self) -> Progress:
        raise ApplicationError("the status of this saga is broken")


@workflow.defn(name="ClientTestGoneWorker")
class GoneWorkerSaga(HeldSaga):
    """The same saga, of a type whose only worker (on GONE_QUEUE) the test stops."""

    @workflow.init
    def __init__(self, plan: Plan) -> None:
        super().__init__(plan)

    @workflow.run
    async def run(self, plan: Plan) -> SagaResult:
        return await self.run_saga(self.go(plan))


@workflow.defn(name="ClientTestRepair")
class FakeRepair:
    """Stands for a saga's repair (the reconciler starts one as `repair-{workflow_id}`)."""

    @workflow.run
    async def run(self, abandoned: AbandonedSaga) -> RepairResult:
        return RepairResult(
            workflow_id=abandoned.workflow_id, outcome="cancelled", actions=["undo a"]
        )


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@asynccontextmanager
async def worker(client: Client, task_queue: str = TASK_QUEUE) -> AsyncIterator[Worker]:
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[HeldSaga, BrokenStatusSaga, GoneWorkerSaga, FakeRepair],
        activities=[work, undo_work],
    ) as running:
        yield running


async def reaches(
    client: Client, handle: WorkflowHandle[Any, Any], check: Callable[[Progress], bool]
) -> None:
    """Poll the saga's own status query (bounded) until `check` holds (it may not have
    started yet)."""

    async def holds() -> bool:
        try:
            return check(await handle.query("status", result_type=Progress))
        except RPCError as err:
            if err.status is RPCStatusCode.NOT_FOUND:
                return False
            raise

    await eventually(holds, f"{handle.id} reached the state the test waits for")


# -- status of a closed run: the time-skipping server ---------------------------------------


@pytest.fixture(scope="module")
async def ts_client(time_skipping_env: WorkflowEnvironment) -> AsyncIterator[Client]:
    async with worker(time_skipping_env.client):
        yield time_skipping_env.client


async def held_then_terminated(client: Client, task_queue: str = TASK_QUEUE) -> str:
    """A saga held in its first step, then terminated: its run ended without a decision."""
    workflow_id = new_id("client-terminated")
    handle = await client.start_workflow(
        HeldSaga.run, Plan(hold="a"), id=workflow_id, task_queue=task_queue
    )
    await reaches(client, handle, lambda p: p.current_step == "a")
    await handle.terminate(reason="stopped by an operator")
    return workflow_id


async def test_status_of_a_terminated_saga_says_terminated(ts_client: Client) -> None:
    workflow_id = await held_then_terminated(ts_client)
    progress = await status(ts_client, workflow_id, Progress)
    assert progress.run_status is RunStatus.TERMINATED
    # The query replays a history with no ending: by itself it says RUNNING.
    assert (progress.status, progress.current_step) == (SagaStatus.RUNNING, "a")
    assert progress.decision is None
    assert progress.query_error is None
    assert progress.repair is None  # no sweep repaired it


async def test_status_of_a_running_and_a_finished_saga_say_so(ts_client: Client) -> None:
    handle = await ts_client.start_workflow(
        HeldSaga.run, Plan(), id=new_id("client-done"), task_queue=TASK_QUEUE
    )
    await handle.result()
    progress = await status(ts_client, handle.id, Progress)
    assert (progress.run_status, progress.status) == (RunStatus.COMPLETED, SagaStatus.CONFIRMED)
    assert progress.repair is None


async def test_status_shows_the_repair_of_a_terminated_saga(ts_client: Client) -> None:
    workflow_id = await held_then_terminated(ts_client)
    run = SagaRun(workflow_id=workflow_id, status=RunStatus.TERMINATED)
    await ts_client.execute_workflow(
        FakeRepair.run,
        AbandonedSaga(workflow_id=workflow_id, run=run, records=["a"]),
        id=repair_workflow_id(workflow_id),
        task_queue=TASK_QUEUE,
    )
    progress = await status(ts_client, workflow_id, Progress)
    assert progress.run_status is RunStatus.TERMINATED
    repair = progress.repair
    assert repair is not None
    assert (repair.workflow_id, repair.run_status) == (
        repair_workflow_id(workflow_id),
        RunStatus.COMPLETED,
    )
    assert repair.result is not None
    assert (repair.result.outcome, repair.result.actions) == ("cancelled", ["undo a"])


async def test_status_of_a_closed_run_nobody_can_query_still_says_how_it_ended(
    ts_client: Client,
) -> None:
    async with worker(ts_client, GONE_QUEUE):
        workflow_id = await held_then_terminated(ts_client, GONE_QUEUE)
    # Its worker is gone: the query waits for one, and is given up after the timeout.
    progress = await status(ts_client, workflow_id, Progress, query_timeout=timedelta(seconds=1))
    assert progress.run_status is RunStatus.TERMINATED
    assert progress.query_error is not None and "no answer within 1 s" in progress.query_error
    # The rest is what it last published in its search attributes.
    assert (progress.status, progress.current_step) == (SagaStatus.RUNNING, "a")


# -- decide and the listing: the dev server -------------------------------------------------


@pytest.fixture(scope="module")
async def dev_client(dev_env: WorkflowEnvironment) -> AsyncIterator[Client]:
    async with worker(dev_env.client):
        yield dev_env.client


@pytest.mark.slow
async def test_decide_of_a_saga_terminated_before_its_decision_raises_saga_ended(
    dev_client: Client,
) -> None:
    workflow_id = new_id("client-decide")
    waiting = asyncio.create_task(
        decide(dev_client, HeldSaga, Plan(hold="a"), workflow_id=workflow_id, task_queue=TASK_QUEUE)
    )
    handle = dev_client.get_workflow_handle(workflow_id)
    await reaches(dev_client, handle, lambda p: p.current_step == "a")
    assert not waiting.done()
    await handle.terminate(reason="stopped by an operator")
    # It ends while the update waits for the decision.
    with pytest.raises(SagaEnded) as while_waiting:
        await asyncio.wait_for(waiting, 30)
    assert while_waiting.value.workflow_id == workflow_id
    assert while_waiting.value.run_status is RunStatus.TERMINATED
    assert "stopped by an operator" in while_waiting.value.detail
    assert "TERMINATED" in str(while_waiting.value)

    # Asked again, the run is closed already: the same answer.
    with pytest.raises(SagaEnded) as already_closed:
        await decide(dev_client, HeldSaga, Plan(), workflow_id=workflow_id, task_queue=TASK_QUEUE)
    assert already_closed.value.run_status is RunStatus.TERMINATED
    assert "stopped by an operator" in already_closed.value.detail


@pytest.mark.slow
async def test_decide_of_a_saga_that_timed_out_before_its_decision_raises_saga_ended(
    dev_client: Client,
) -> None:
    handle = await dev_client.start_workflow(
        HeldSaga.run,
        Plan(hold="a"),
        id=new_id("client-timed-out"),
        task_queue=TASK_QUEUE,
        execution_timeout=timedelta(seconds=2),
    )

    async def timed_out() -> bool:
        described = await handle.describe()
        return described.status is WorkflowExecutionStatus.TIMED_OUT

    await eventually(timed_out, f"{handle.id} timed out")
    with pytest.raises(SagaEnded) as ended:
        await decide(dev_client, HeldSaga, Plan(), workflow_id=handle.id, task_queue=TASK_QUEUE)
    assert ended.value.run_status is RunStatus.TIMED_OUT
    progress = await status(dev_client, handle.id, Progress)
    assert (progress.run_status, progress.decision) == (RunStatus.TIMED_OUT, None)


@pytest.mark.slow
async def test_decide_of_a_saga_terminated_after_its_decision_answers_the_decision(
    dev_client: Client,
) -> None:
    workflow_id = new_id("client-decided")
    decision, handle = await decide(
        dev_client, HeldSaga, Plan(hold="ship"), workflow_id=workflow_id, task_queue=TASK_QUEUE
    )
    assert decision.status is Outcome.CONFIRMED and decision.steps_done == ["a", "pay"]
    await handle.terminate(reason="stopped while shipping")
    again, _ = await decide(
        dev_client, HeldSaga, Plan(), workflow_id=workflow_id, task_queue=TASK_QUEUE
    )
    assert again == decision


async def stuck_saga(
    client: Client, saga: type[HeldSaga], task_queue: str = TASK_QUEUE
) -> WorkflowHandle[Any, SagaResult]:
    """A saga of `saga`'s type refused at its pivot, whose undo of "a" is stuck."""
    handle = await client.start_workflow(
        saga.run,
        Plan(refuse="pay", undo_broken=True),
        id=new_id(f"client-{saga.__name__.lower()}"),
        task_queue=task_queue,
    )
    # The broken one's query raises: wait for its search attribute instead.
    query = f"{NEEDS_ATTENTION_QUERY} AND WorkflowId = '{handle.id}'"

    async def listed() -> bool:
        return (await client.count_workflows(query)).count == 1

    await eventually(listed, f"{handle.id} listed in NEEDS_ATTENTION")
    return handle


@pytest.mark.slow
async def test_attention_list_names_the_sagas_it_cannot_read_and_lists_the_others(
    dev_env: WorkflowEnvironment, dev_client: Client
) -> None:
    async with worker(dev_client, GONE_QUEUE):
        gone = await stuck_saga(dev_client, GoneWorkerSaga, GONE_QUEUE)
    readable = await stuck_saga(dev_client, HeldSaga)
    broken = await stuck_saga(dev_client, BrokenStatusSaga)
    handles = [readable, broken, gone]
    ids = ", ".join(f"'{h.id}'" for h in handles)
    try:
        # The engine: one entry each, the query's answer or the error.
        found = {
            entry.workflow_id: entry
            for entry in await needing_attention(
                dev_client,
                10,
                f"AND WorkflowId IN ({ids})",
                query_timeout=timedelta(seconds=2),
            )
        }
        assert set(found) == {h.id for h in handles}
        answered = found[readable.id].progress
        assert answered is not None and answered.stuck == ["undo_a"]
        assert found[readable.id].error is None
        assert found[broken.id].progress is None
        # Its failure's message is encrypted with the payloads (the dev server's converter has
        # the codec): the handler's words are in the worker's log.
        assert "its status query failed" in (found[broken.id].error or "")
        assert found[gone.id].progress is None
        assert "no answer within 2 s" in (found[gone.id].error or "")

        # The CLI: every stuck saga it can read, the others named with their error; exit 1.
        def cli(*args: str) -> tuple[int, str, str]:
            done = run_cli(dev_env, Settings(task_queue=TASK_QUEUE), *args)
            return done.returncode, done.stdout, done.stderr

        listing = ("attention", "list", "--limit", "10000", "--query-timeout", "2")
        code, out, err = await asyncio.to_thread(cli, *listing, "--json")
        assert code == 1, out + err
        rows = {row["workflow_id"]: row for row in map(json.loads, out.splitlines())}
        assert rows[readable.id]["stuck"] == ["undo_a"] and rows[readable.id]["error"] is None
        assert rows[readable.id]["workflow_type"] == "ClientTestSaga"
        assert "its status query failed" in rows[broken.id]["error"]
        assert rows[broken.id]["workflow_type"] == "ClientTestBrokenStatus"
        assert "no answer within 2 s" in rows[gone.id]["error"]
        assert "stuck" not in rows[gone.id]
        assert broken.id in err and gone.id in err and readable.id not in err

        code, table, err = await asyncio.to_thread(cli, *listing)
        assert code == 1, table + err
        for handle in handles:
            assert handle.id in table, table
        assert "undo_a" in table and "provider down" in table, table
        assert "its status query failed" in table, table

        # `checkout-saga status` of a terminated saga: how it ended, though no one can
        # query it (its worker is gone).
        await gone.terminate(reason="given up")
        code, out, err = await asyncio.to_thread(
            cli, "status", "--workflow-id", gone.id, "--query-timeout", "1"
        )
        assert code == 0, out + err
        shown = json.loads(out)
        assert shown["run_status"] == "TERMINATED"
        assert shown["status"] == "NEEDS_ATTENTION" and shown["current_step"] == "pay"
        assert "no answer within 1 s" in shown["query_error"]
    finally:
        # Nothing left in NEEDS_ATTENTION for the modules after this one.
        for handle in handles:
            await terminate_quietly(handle)
        query = f"{NEEDS_ATTENTION_QUERY} AND WorkflowId IN ({ids})"

        async def none_listed() -> bool:
            return (await dev_client.count_workflows(query)).count == 0

        await eventually(none_listed, "the test's sagas no longer listed")


async def terminate_quietly(handle: WorkflowHandle[Any, Any]) -> None:
    described = await handle.describe()
    if described.status is not None and described.status.name == "RUNNING":
        await handle.terminate(reason="test over")


async def test_status_read_without_the_payload_keys_names_them(ts_client: Client) -> None:
    keys = {CODEC_KEYS_ENV: format_keys([new_key("k1")])}
    config = ts_client.config()
    config["data_converter"] = data_converter(keys)
    encrypted = Client(**config)
    async with worker(encrypted, ENCRYPTED_QUEUE):
        workflow_id = await held_then_terminated(encrypted, ENCRYPTED_QUEUE)
        progress = await status(ts_client, workflow_id, Progress)  # a client without keys
    assert progress.run_status is RunStatus.TERMINATED
    assert progress.query_error is not None
    assert f"set {CODEC_KEYS_ENV} to their keys" in progress.query_error
