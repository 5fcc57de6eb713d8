"""The client side of the saga engine, for any saga: its answer by update-with-start, its
status, and what operators send it. Workflow code never imports this module.

A saga's own types come from its class (`SagaWorkflow[Input, Result, Progress]`); a tool
that knows no saga type reads the engine's models, which keep the saga's own fields as extras.
"""

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
    WithStartWorkflowOperation,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import CancelledError as RunCancelledError
from temporalio.exceptions import TerminatedError, WorkflowAlreadyStartedError
from temporalio.exceptions import TimeoutError as RunTimeoutError
from temporalio.service import RPCError, RPCStatusCode

from temporal_saga.codec import CODEC_KEYS_ENV, ENCODING
from temporal_saga.models import (
    CancelSaga,
    RepairResult,
    RunStatus,
    SagaProgress,
    SagaRepairState,
    SagaResult,
    SagaStatus,
    SkipCompensation,
    SweepReport,
    SweepRequest,
)
from temporal_saga.reconcile import NEEDS_ATTENTION_QUERY, SWEEP_WORKFLOW, repair_workflow_id
from temporal_saga.runs import polled
from temporal_saga.search import SAGA_STATUS, SAGA_STEP
from temporal_saga.workflow import SagaWorkflow

InputT = TypeVar("InputT")
ResultT = TypeVar("ResultT", bound=SagaResult)
ProgressT = TypeVar("ProgressT", bound=SagaProgress[Any])


AnyProgress = SagaProgress[SagaResult]

# How long a query waits for its answer: a saga whose worker is gone answers nothing, and a
# query to it would wait as long as its caller does.
QUERY_TIMEOUT = timedelta(seconds=10)
# The sweep's Schedule, unless named otherwise, and how often it runs.
SWEEP_SCHEDULE = "saga-sweep"
SWEEP_EVERY = timedelta(minutes=5)
# How many sagas `needing_attention` queries at once.
QUERY_CONCURRENCY = 8
# Runs that closed without their code finishing: the reconciler's sweep repairs such a saga.
ENDED_UNFINISHED = frozenset(
    {RunStatus.FAILED, RunStatus.CANCELED, RunStatus.TERMINATED, RunStatus.TIMED_OUT}
)


class SagaEnded(Exception):
    """The saga's run ended without a decision: Temporal terminated it, it timed out, or it
    failed or was cancelled before its steps decided. `run_status` says which; the
    reconciler's sweep settles what such a run left open."""

    def __init__(self, workflow_id: str, run_status: RunStatus, detail: str) -> None:
        super().__init__(f"saga {workflow_id} ended without a decision ({run_status}): {detail}")
        self.workflow_id = workflow_id
        self.run_status = run_status
        self.detail = detail


async def decide(
    client: Client,
    saga: type[SagaWorkflow[InputT, ResultT]],
    input: InputT,
    *,
    workflow_id: str,
    task_queue: str,
) -> tuple[ResultT, WorkflowHandle[Any, ResultT]]:
    """Start the saga and return its decision as soon as it is known, in one round trip
    (update-with-start of `decision`); the saga goes on with what follows its decision.

    The workflow id is the business key: a repeat joins the running saga, or gets the answer
    of the finished one; it never runs a second time.

    A saga whose run ended without deciding (terminated, timed out, failed or cancelled
    before its steps decided), whether before this call or while it waited, raises
    `SagaEnded`, whose `run_status` says how it ended. A run that ended after deciding
    answers with that decision.
    """
    result_type: type[ResultT] = saga._result_type  # type: ignore[assignment]
    start: WithStartWorkflowOperation[Any, ResultT] = WithStartWorkflowOperation(
        saga.run,
        input,
        id=workflow_id,
        task_queue=task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
    try:
        decision = await client.execute_update_with_start_workflow(
            "decision", start_workflow_operation=start, result_type=result_type
        )
        return decision, await start.workflow_handle()
    except WorkflowAlreadyStartedError:  # finished earlier: its answer is final
        with contextlib.suppress(WorkflowAlreadyStartedError):
            await start.workflow_handle()  # the same error; retrieved so it isn't logged
        return await _answer_of_closed(client, saga, workflow_id)
    except WorkflowUpdateFailedError:
        # The run closed while the update waited (AcceptedUpdateCompletedWorkflow).
        if await _closed_run(client, workflow_id) is None:
            raise
        return await _answer_of_closed(client, saga, workflow_id)
    except (RPCError, WorkflowUpdateRPCTimeoutOrCancelledError) as err:
        # The server was unreachable or the call timed out: the caller may call again (same
        # id). The start operation holds the same error; retrieved so it isn't logged.
        with contextlib.suppress(RPCError, WorkflowUpdateRPCTimeoutOrCancelledError):
            await start.workflow_handle()
        # Or the run closed before the update was accepted ("workflow execution already
        # completed").
        if (
            isinstance(err, RPCError)
            and err.status is RPCStatusCode.NOT_FOUND
            and await _closed_run(client, workflow_id) is not None
        ):
            return await _answer_of_closed(client, saga, workflow_id)
        raise


async def _answer_of_closed(
    client: Client, saga: type[SagaWorkflow[Any, ResultT]], workflow_id: str
) -> tuple[ResultT, WorkflowHandle[Any, ResultT]]:
    """A closed saga's answer: its result; for a run that ended without completing, the
    decision its `status` holds, or SagaEnded when there is none."""
    handle = saga_handle(client, saga, workflow_id)
    try:
        return await handle.result(), handle
    except WorkflowFailureError as err:
        detail = str(err.cause or err)
        try:
            progress = await handle.query(
                "status", result_type=saga._progress_type, rpc_timeout=QUERY_TIMEOUT
            )
        except Exception as unread:  # no worker, say: whether it decided is not known
            why = _unanswered(unread, QUERY_TIMEOUT)
            detail += f" (its status could not be read: {why})"
        else:
            decision: ResultT | None = progress.decision
            if decision is not None:
                return decision, handle
        raise SagaEnded(workflow_id, _ended_as(err.cause), detail) from err


def _ended_as(cause: BaseException | None) -> RunStatus:
    """How a run ended, from the failure its result raised."""
    if isinstance(cause, TerminatedError):
        return RunStatus.TERMINATED
    if isinstance(cause, RunTimeoutError):
        return RunStatus.TIMED_OUT
    if isinstance(cause, RunCancelledError):
        return RunStatus.CANCELED
    return RunStatus.FAILED


async def _closed_run(client: Client, workflow_id: str) -> RunStatus | None:
    """How the latest run of `workflow_id` ended; None while it runs or when Temporal
    cannot say."""
    try:
        described = await client.get_workflow_handle(workflow_id).describe()
    except RPCError:
        return None
    run_status = RunStatus.of(described.status)
    return None if run_status is RunStatus.RUNNING else run_status


def _unanswered(err: Exception, waited: timedelta) -> str:
    """Why a query went unanswered (given up after `waited`), for an operator."""
    if isinstance(err, WorkflowQueryFailedError):
        # With a payload codec that encodes failures, the message is "Encoded failure": the
        # handler's own words are in its worker's log.
        return f"its status query failed: {err.message}"
    if isinstance(err, RPCError):
        if err.status in (RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED):
            return (
                f"no answer within {waited.total_seconds():g} s (is a worker of its type "
                f"running?): {err.message}"
            )
        return f"{err.status.name}: {err.message}"
    words = f"{type(err).__name__}: {err}"
    if ENCODING.decode() in words:  # the answer came encrypted, and this client has no keys
        return f"{words} (its payloads are encrypted: set {CODEC_KEYS_ENV} to their keys)"
    return words


def saga_handle(
    client: Client, saga: type[SagaWorkflow[Any, ResultT]], workflow_id: str
) -> WorkflowHandle[Any, ResultT]:
    """The handle of one saga of a known type: its result decodes as the saga's."""
    result_type: type[ResultT] = saga._result_type  # type: ignore[assignment]
    return client.get_workflow_handle(workflow_id, result_type=result_type)


async def status(
    client: Client,
    workflow_id: str,
    progress_type: type[ProgressT],
    *,
    query_timeout: timedelta = QUERY_TIMEOUT,
) -> ProgressT:
    """The `status` query of any saga (its own fields kept as extras of the engine's), with
    how its latest run stands (`run_status`: Temporal's description of it), and for a run
    that ended without finishing, the reconciler's repair of it (`repair`), if one started.

    A closed run whose query goes unanswered within `query_timeout` (its worker is gone, say)
    still answers: its last SagaStatus and SagaStep search attributes, and `query_error`. A
    running one raises what the query raised; a workflow id Temporal does not know raises
    RPCError (NOT_FOUND).
    """
    handle = client.get_workflow_handle(workflow_id)
    described = await handle.describe()
    run_status = RunStatus.of(described.status)
    try:
        progress: ProgressT = await client.get_workflow_handle(
            workflow_id, run_id=described.run_id
        ).query("status", result_type=progress_type, rpc_timeout=query_timeout)
    except Exception as err:
        if run_status is RunStatus.RUNNING:
            raise
        why = _unanswered(err, query_timeout)
        progress = _last_published(described, progress_type, why)
    progress.run_status = run_status
    if run_status in ENDED_UNFINISHED:
        progress.repair = await _repair_state(client, repair_workflow_id(workflow_id))
    return progress


def _last_published(
    described: WorkflowExecutionDescription, progress_type: type[ProgressT], error: str
) -> ProgressT:
    """What a run last published of itself, in its search attributes."""
    attributes = described.typed_search_attributes
    return progress_type.model_validate(
        {
            "status": attributes.get(SAGA_STATUS) or SagaStatus.RUNNING,
            "current_step": attributes.get(SAGA_STEP) or None,
            "query_error": error,
        }
    )


async def _repair_state(client: Client, repair_id: str) -> SagaRepairState | None:
    """The repair's latest run (None when there is none): its result once it completed,
    else where it is."""
    handle = client.get_workflow_handle(repair_id, result_type=RepairResult)
    try:
        described = await handle.describe()
    except RPCError as err:
        if err.status is RPCStatusCode.NOT_FOUND:
            return None
        raise
    attributes = described.typed_search_attributes
    state = SagaRepairState(
        workflow_id=repair_id,
        run_status=RunStatus.of(described.status),
        status=attributes.get(SAGA_STATUS),
        current_step=attributes.get(SAGA_STEP) or None,
    )
    if state.run_status is RunStatus.COMPLETED:
        try:
            state.result = await handle.result(rpc_timeout=QUERY_TIMEOUT)
        except Exception as err:  # its history, or a result of another form
            state.error = _unanswered(err, QUERY_TIMEOUT)
    return state


async def cancel(
    client: Client, workflow_id: str, reason: str, result_type: type[ResultT]
) -> ResultT:
    """Cancel before the pivot; the answer (REJECTED, cancelled). Refused from the pivot on:
    WorkflowUpdateFailedError, whose cause says why."""
    answer: ResultT = await client.get_workflow_handle(workflow_id).execute_update(
        "cancel", CancelSaga(reason=reason), result_type=result_type
    )
    return answer


async def retry_compensation(client: Client, workflow_id: str, name: str | None = None) -> str:
    """Operator: try the stuck compensation again; the name of the one retried."""
    retried: str = await client.get_workflow_handle(workflow_id).execute_update(
        "retry_compensation", name, result_type=str
    )
    return retried


async def skip_compensation(
    client: Client, workflow_id: str, reason: str, name: str | None = None
) -> str:
    """Operator: give up on the stuck compensation, with the reason; the name skipped."""
    skipped: str = await client.get_workflow_handle(workflow_id).execute_update(
        "skip_compensation", SkipCompensation(reason=reason, name=name), result_type=str
    )
    return skipped


@dataclass(frozen=True)
class Stuck:
    """A saga in NEEDS_ATTENTION: its `status` query's answer, or why there is none."""

    workflow_id: str
    workflow_type: str
    progress: AnyProgress | None
    # Set when the query went unanswered (no worker of its type, its query raised, ...).
    error: str | None = None


async def needing_attention(
    client: Client,
    limit: int,
    query: str = "",
    *,
    concurrency: int = QUERY_CONCURRENCY,
    query_timeout: timedelta = QUERY_TIMEOUT,
) -> list[Stuck]:
    """Every saga in NEEDS_ATTENTION (of any type, by the SagaStatus search attribute), with
    its status; `query`: more of a visibility query to narrow it (`AND ...`).

    One saga's query failing does not hide the others: that one comes with `error` instead
    of `progress`. The queries run `concurrency` at a time, each given up after
    `query_timeout` (a saga whose worker is gone answers nothing)."""
    executions = [
        execution
        async for execution in client.list_workflows(
            f"{NEEDS_ATTENTION_QUERY} {query}".strip(), limit=limit
        )
    ]
    gate = asyncio.Semaphore(concurrency)

    async def read(workflow_id: str, run_id: str, workflow_type: str) -> Stuck:
        async with gate:
            try:
                progress = await client.get_workflow_handle(workflow_id, run_id=run_id).query(
                    "status", result_type=AnyProgress, rpc_timeout=query_timeout
                )
            except Exception as err:  # whatever it is, it is this saga's alone
                why = _unanswered(err, query_timeout)
                return Stuck(workflow_id, workflow_type, None, why)
        return Stuck(workflow_id, workflow_type, progress)

    return list(await asyncio.gather(*(read(e.id, e.run_id, e.workflow_type) for e in executions)))


async def ensure_sweep_schedule(
    client: Client,
    *,
    task_queue: str,
    every: timedelta = SWEEP_EVERY,
    request: SweepRequest | None = None,
    schedule_id: str = SWEEP_SCHEDULE,
) -> str:
    """The Temporal Schedule that runs `request`'s sweep (default: every saga type, each
    settled by a reset of its ended runs) every `every` on `task_queue` (a worker made by
    `saga_worker` runs it), created by whichever worker comes first (any number may call
    this: a second finds it and updates its interval and request to this call's). One per
    namespace: its request names every saga type with a finder and repair of its own.
    Overlap SKIP: a sweep still running when the next is due makes that one skip. Returns
    "created", "updated" or "unchanged"."""
    request = request or SweepRequest()
    action = ScheduleActionStartWorkflow(
        SWEEP_WORKFLOW,
        request,
        id=f"{schedule_id}-run",
        task_queue=task_queue,
    )
    schedule = Schedule(
        action=action,
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )
    try:
        await client.create_schedule(schedule_id, schedule)
        return "created"
    except ScheduleAlreadyRunningError:
        pass
    handle = client.get_schedule_handle(schedule_id)
    current = (await handle.describe()).schedule
    intervals = current.spec.intervals
    current_every = intervals[0].every if len(intervals) == 1 else None
    if current_every == every and await _sweep_of(client, current.action) == request:
        return "unchanged"

    # Paused by an operator: it stays paused.
    schedule.state = ScheduleState(paused=current.state.paused, note=current.state.note)

    def update(_: ScheduleUpdateInput) -> ScheduleUpdate:
        return ScheduleUpdate(schedule=schedule)

    await handle.update(update)
    return "updated"


async def _sweep_of(client: Client, action: object) -> SweepRequest | None:
    """The SweepRequest a described schedule's action starts with (its args come raw)."""
    args = list(getattr(action, "args", None) or [])
    if len(args) != 1:
        return None
    if isinstance(args[0], Payload):
        [decoded] = await client.data_converter.decode(args, [SweepRequest])
        return decoded if isinstance(decoded, SweepRequest) else None
    return args[0] if isinstance(args[0], SweepRequest) else None


# How long `sweep_now` waits for a worker on the sweep's task queue, and then for one to run
# the sweep's first workflow task.
SWEEP_START_TIMEOUT = timedelta(seconds=5)
_SWEEP_START_POLL_SECONDS = 0.2


class NoSweepWorker(RuntimeError):
    """No worker ran the sweep: none polls its task queue, or none ran its first workflow
    task in time (one that stopped is still listed as a poller for a while, and one that
    does not run the engine's sweep fails its task)."""


async def sweep_now(
    client: Client,
    request: SweepRequest,
    task_queue: str,
    workflow_id: str | None = None,
    *,
    start_timeout: timedelta = SWEEP_START_TIMEOUT,
) -> SweepReport:
    """One sweep, now, outside the schedule (a new workflow id unless given); its report.

    Raises NoSweepWorker, within `start_timeout` for each, when no worker polls `task_queue`
    (before the sweep starts) or none runs the sweep's first workflow task. Leaves no sweep
    running when it raises or is cancelled (Ctrl-C): it terminates the sweep it started
    (the repairs and the reset runs that sweep started go on)."""
    if not await _until(lambda: polled(client, task_queue), start_timeout):
        raise NoSweepWorker(
            f"no worker polls task queue {task_queue!r}: start one that runs the engine's "
            "sweep (saga_worker registers it), then try again"
        )
    handle: WorkflowHandle[Any, SweepReport] = await client.start_workflow(
        SWEEP_WORKFLOW,
        request,
        id=workflow_id or f"{SWEEP_WORKFLOW.lower()}-{uuid.uuid4().hex[:12]}",
        task_queue=task_queue,
        result_type=SweepReport,
    )
    finished = False
    try:
        if not await _until(lambda: _first_task_done(handle), start_timeout):
            raise NoSweepWorker(
                f"no worker ran the sweep {handle.id} within "
                f"{start_timeout.total_seconds():g} s: the workers of task queue "
                f"{task_queue!r} have stopped (Temporal lists them as pollers for a while "
                "after) or do not run the engine's sweep; it was terminated"
            )
        report = await handle.result()
        finished = True
        return report
    finally:
        if not finished:
            with contextlib.suppress(RPCError):  # it closed meanwhile: nothing to stop
                await handle.terminate(reason="its caller stopped waiting for it")


async def _until(check: Callable[[], Awaitable[bool]], within: timedelta) -> bool:
    """Poll `check` until it holds (True) or `within` has passed (False)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within.total_seconds()
    while not await check():
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(_SWEEP_START_POLL_SECONDS)
    return True


async def _first_task_done(handle: WorkflowHandle[Any, Any]) -> bool:
    """Whether a worker completed a workflow task of the run (or it closed)."""
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            return True
    return (await handle.describe()).status is not WorkflowExecutionStatus.RUNNING
