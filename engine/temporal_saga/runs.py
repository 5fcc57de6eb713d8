"""What Temporal knows of a saga's workflow id: the engine's activities for the reconciler.

They hold a Temporal client (an activity may; workflow code may not): the latest run's status,
and that run's input, decoded by the client's data converter (so through the payload codec);
the sagas found by their runs that closed without finishing; and the sweep's reset of such a
run (to its last completed workflow task) and its wait for what became of the new run, which
it cancels once the new run has completed a workflow task.

Why only then: the new run's first workflow task does again what the old run's last completed
one did (registers the compensations of the steps it started, starts the pivot if it did). A
cancellation delivered in that same task is handled first, so the saga would stop short of
that point: a step in flight when the run ended would not be undone, a pivot in flight would
be compensated instead of finished.
"""

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC
from typing import Any

from temporalio import activity
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType, TaskQueueType, WorkflowTaskFailedCause
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import (
    DescribeTaskQueueRequest,
    GetWorkflowExecutionHistoryReverseRequest,
    ResetWorkflowExecutionRequest,
)
from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowFailureError,
)
from temporalio.service import RPCError, RPCStatusCode

from temporal_saga.models import (
    AwaitRun,
    ClosedSaga,
    FindClosedRuns,
    Outcome,
    ResetOutcome,
    ResetRun,
    RunStatus,
    SagaReset,
    SagaResult,
    SagaRun,
)
from temporal_saga.search import SAGA_STATUS

# The runs the sweep resets: Temporal closed them without their code finishing, or it failed.
ENDED = frozenset({RunStatus.TERMINATED, RunStatus.TIMED_OUT, RunStatus.FAILED})
# The workflow ids of the repairs the sweep starts begin with this.
REPAIR_PREFIX = "repair-"
# The reason of every reset the sweep makes begins with this: how a run it made is told.
RESET_REASON_PREFIX = "saga sweep"
# How often a wait for a run heartbeats (the sweep gives it a heartbeat timeout above this),
# and how soon it first looks again, until it has cancelled the run, whether the run has
# caught up.
AWAIT_HEARTBEAT_SECONDS = 5.0
CAUGHT_UP_POLL_SECONDS = 0.1
NOT_CAUGHT_UP = (
    "no worker has run it since the reset: a later sweep requests its cancellation once one has"
)
_CLOSED_EVENTS = frozenset(
    {
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW,
    }
)
# The request ids of the sweep's resets: one per run reset.
_RESET_REQUESTS = uuid.UUID("6f0c1bb4-6a55-4c58-9c0e-7a0d5e0f3a21")


class SagaRuns:
    def __init__(self, client: Client) -> None:
        self._client = client

    @activity.defn(name="describe_saga_run")
    async def describe_saga_run(self, workflow_id: str) -> SagaRun:
        """The latest run of `workflow_id` (MISSING when Temporal has none)."""
        return (await self._describe(workflow_id))[0]

    @activity.defn(name="saga_input")
    async def saga_input(self, workflow_id: str) -> dict[str, Any] | None:
        """The input the latest run of `workflow_id` started with (None when Temporal has no
        such workflow, or it started with none)."""
        handle = self._client.get_workflow_handle(workflow_id)
        try:
            async for event in handle.fetch_history_events(page_size=1):
                started = event.workflow_execution_started_event_attributes
                payloads = list(started.input.payloads)
                if not payloads:
                    return None
                decoded = await self._client.data_converter.decode(payloads[:1], [dict])
                first: dict[str, Any] = decoded[0]
                return first
        except RPCError as err:
            if err.status is RPCStatusCode.NOT_FOUND:
                return None
            raise
        return None

    @activity.defn(name="closed_saga_runs")
    async def closed_saga_runs(self, request: FindClosedRuns) -> list[str]:
        """The workflow ids of runs of the type that Temporal closed without their code
        finishing (terminated, timed out) or that failed, closed after `closed_after`; each id
        once, newest first. Visibility answers this; its store lags a few seconds."""
        closed_after = request.closed_after.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        conditions = []
        if request.workflow_type is not None:
            conditions.append(f"WorkflowType = '{request.workflow_type}'")
        if request.sagas_only:
            conditions.append(f"{SAGA_STATUS.name} IS NOT NULL")
        if request.exclude_types:
            excluded = ", ".join(f"'{t}'" for t in request.exclude_types)
            conditions.append(f"WorkflowType NOT IN ({excluded})")
        conditions += [
            "ExecutionStatus IN ('Terminated', 'TimedOut', 'Failed')",
            f"CloseTime > '{closed_after}'",
        ]
        found: dict[str, None] = {}
        async for execution in self._client.list_workflows(
            " AND ".join(conditions), limit=request.limit
        ):
            if request.sagas_only and execution.id.startswith(REPAIR_PREFIX):
                continue  # a repair of a saga with its own (it keeps SagaStatus too)
            found[execution.id] = None
        return list(found)

    @activity.defn(name="closed_sagas")
    async def closed_sagas(self, request: FindClosedRuns) -> list[ClosedSaga]:
        """The sagas `closed_saga_runs` finds, each with its latest run, but those the sweep
        has nothing to do with: its latest run completed (it finished, reset or not), is
        gone, closed otherwise (cancelled), or was made by a reset of the sweep's and closed
        (the sweep that made it reported how it ended; it never resets a run it made). A
        running one the sweep made whose cancellation it has not requested yet (no worker
        had run it) is marked `cancel_pending`."""
        ids = await self.closed_saga_runs(request)
        runs = await asyncio.gather(*(self._describe(workflow_id) for workflow_id in ids))
        made = await asyncio.gather(*(self._made_by_sweep(run, d) for run, d in runs))
        found = []
        for (run, described), by_sweep in zip(runs, made, strict=True):
            if run.status is RunStatus.RUNNING and described is not None:
                extended = described.raw_description.workflow_extended_info
                pending = by_sweep and not extended.cancel_requested
                found.append(
                    ClosedSaga(workflow_id=run.workflow_id, run=run, cancel_pending=pending)
                )
            elif run.status in ENDED and not by_sweep:
                found.append(ClosedSaga(workflow_id=run.workflow_id, run=run))
        return found

    @activity.defn(name="reset_saga_run")
    async def reset_saga_run(self, request: ResetRun) -> SagaReset:
        """Reset the run (its workflow's latest, closed without finishing) to its last
        completed workflow task; its outcome is still_running with the new run, or not_reset
        with why. `await_saga_run` cancels the new run once it has caught up.

        Idempotent: a run reset already by the sweep (an earlier attempt) is not reset again
        (Temporal would: a reset's request id does not make it idempotent)."""
        workflow_id = request.workflow_id
        try:
            base = await self._client.get_workflow_handle(
                workflow_id, run_id=request.run_id
            ).describe()
        except RPCError as err:
            if err.status is RPCStatusCode.NOT_FOUND:
                return _not_reset("Temporal has no such run (past retention?)")
            raise
        reset_run_id: str | None = base.raw_description.workflow_extended_info.reset_run_id
        if reset_run_id:
            if not await self._made_by_sweep(*await self._describe(workflow_id, reset_run_id)):
                return _not_reset(f"reset already (not by the sweep), to run {reset_run_id}")
            return SagaReset(outcome=ResetOutcome.STILL_RUNNING, run_id=reset_run_id)
        status = RunStatus.of(base.status)
        if status not in ENDED:
            return _not_reset(f"its run is {status.value}")
        latest, _ = await self._describe(workflow_id)
        if latest.run_id != request.run_id:
            return _not_reset(f"a newer run {latest.run_id} is {latest.status.value}")
        # The new run is cancelled once a worker has run it; without one it would wait, and
        # then go on uncancelled until a later sweep cancels it.
        task_queue = base.raw_description.execution_config.task_queue.name
        if not await polled(self._client, task_queue):
            return _not_reset(f"no worker polls its task queue {task_queue!r}: not reset yet")
        reset_run_id = await self._reset(request)
        if reset_run_id is None:
            return _not_reset("no workflow task of it completed: nothing ran")
        return SagaReset(outcome=ResetOutcome.STILL_RUNNING, run_id=reset_run_id)

    @activity.defn(name="await_saga_run")
    async def await_saga_run(self, request: AwaitRun) -> SagaReset:
        """Cancel the run (one the sweep made by a reset) once it has completed a workflow
        task since the reset, and wait up to `wait_seconds` for it to close: its result when
        it completed, failed_again when it closed otherwise, still_running when it did not
        close (with why, when no worker had run it: a later sweep cancels it)."""
        handle = self._client.get_workflow_handle(
            request.workflow_id, run_id=request.run_id, result_type=SagaResult
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + request.wait_seconds
        cancelled = False
        step = CAUGHT_UP_POLL_SECONDS  # until cancelled: doubling, up to the heartbeat's
        while True:
            activity.heartbeat()
            if not cancelled:
                cancelled = await self._cancel_once_caught_up(request)
            step = AWAIT_HEARTBEAT_SECONDS if cancelled else min(step * 2, AWAIT_HEARTBEAT_SECONDS)
            remaining = deadline - loop.time()
            try:
                result: SagaResult = await asyncio.wait_for(
                    handle.result(follow_runs=False), timeout=max(0.1, min(remaining, step))
                )
            except TimeoutError:
                if loop.time() < deadline:
                    continue
                return SagaReset(
                    outcome=ResetOutcome.STILL_RUNNING,
                    run_id=request.run_id,
                    detail=None if cancelled else NOT_CAUGHT_UP,
                )
            except WorkflowFailureError as err:
                return SagaReset(
                    outcome=ResetOutcome.FAILED_AGAIN, run_id=request.run_id, detail=_words(err)
                )
            rejected = result.status is Outcome.REJECTED
            return SagaReset(
                outcome=ResetOutcome.COMPENSATED if rejected else ResetOutcome.WENT_FORWARD,
                run_id=request.run_id,
                detail=result.reason,
                steps_done=result.steps_done,
                compensations_done=result.compensations_done,
            )

    @activity.defn(name="count_needing_attention")
    async def count_needing_attention(self, query: str) -> int:
        """How many running sagas (of any type) wait for an operator (`query`: the
        visibility query that says so)."""
        return (await self._client.count_workflows(query)).count

    def all(self) -> list[Any]:
        return [
            self.describe_saga_run,
            self.saga_input,
            self.closed_saga_runs,
            self.closed_sagas,
            self.reset_saga_run,
            self.await_saga_run,
            self.count_needing_attention,
        ]

    # -- helpers -----------------------------------------------------------------------------

    async def _describe(
        self, workflow_id: str, run_id: str | None = None
    ) -> tuple[SagaRun, WorkflowExecutionDescription | None]:
        try:
            described = await self._client.get_workflow_handle(
                workflow_id, run_id=run_id
            ).describe()
        except RPCError as err:
            if err.status is RPCStatusCode.NOT_FOUND:
                return SagaRun(workflow_id=workflow_id, status=RunStatus.MISSING), None
            raise
        run = SagaRun(
            workflow_id=workflow_id,
            status=RunStatus.of(described.status),
            run_id=described.run_id,
            workflow_type=described.workflow_type,
        )
        return run, described

    async def _made_by_sweep(
        self, run: SagaRun, described: WorkflowExecutionDescription | None
    ) -> bool:
        """Whether the run was made by a reset of the sweep's: its latest reset (the workflow
        task it failed, read from the end of its history) has the sweep's reason."""
        if described is None or run.run_id is None:
            return False
        if not described.raw_description.workflow_extended_info.HasField("last_reset_time"):
            return False
        execution = WorkflowExecution(workflow_id=run.workflow_id, run_id=run.run_id)
        async for event in self._newest_first(execution):
            if _is_reset(event):
                message = event.workflow_task_failed_event_attributes.failure.message
                return message.startswith(RESET_REASON_PREFIX)
        return False

    async def _reset(self, request: ResetRun) -> str | None:
        """Reset the run to its last completed workflow task; the new run's id (None when no
        workflow task of it completed)."""
        handle = self._client.get_workflow_handle(request.workflow_id, run_id=request.run_id)
        last: int | None = None
        async for event in handle.fetch_history_events():
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
                last = event.event_id
        if last is None:
            return None
        response = await self._client.workflow_service.reset_workflow_execution(
            ResetWorkflowExecutionRequest(
                namespace=self._client.namespace,
                workflow_execution=WorkflowExecution(
                    workflow_id=request.workflow_id, run_id=request.run_id
                ),
                reason=request.reason,
                workflow_task_finish_event_id=last,
                request_id=str(uuid.uuid5(_RESET_REQUESTS, request.run_id)),
                identity=self._client.identity,
            )
        )
        activity.logger.info(
            "reset %s run %s to event %d: new run %s",
            request.workflow_id,
            request.run_id,
            last,
            response.run_id,
        )
        return response.run_id

    async def _cancel_once_caught_up(self, request: AwaitRun) -> bool:
        """Request the run's cancellation if a workflow task of it completed since its reset
        (read from the end of its history); whether it is requested (or the run closed)."""
        execution = WorkflowExecution(workflow_id=request.workflow_id, run_id=request.run_id)
        if not await self._caught_up(execution):
            return False
        try:
            await self._client.get_workflow_handle(
                request.workflow_id, run_id=request.run_id
            ).cancel()
        except RPCError as err:
            if err.status is not RPCStatusCode.NOT_FOUND:  # NOT_FOUND: it closed meanwhile
                raise
        return True

    async def _caught_up(self, execution: WorkflowExecution) -> bool:
        """Whether a workflow task of the run completed (or the run closed) after the
        workflow task its reset failed."""
        async for event in self._newest_first(execution):
            if _is_reset(event):
                return False
            if (
                event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
                or event.event_type in _CLOSED_EVENTS
            ):
                return True
        return False

    async def _newest_first(self, execution: WorkflowExecution) -> AsyncIterator[HistoryEvent]:
        """The run's history from its end, a page at a time (a caller that has read enough
        stops there)."""
        token = b""
        while True:
            page = await self._client.workflow_service.get_workflow_execution_history_reverse(
                GetWorkflowExecutionHistoryReverseRequest(
                    namespace=self._client.namespace,
                    execution=execution,
                    maximum_page_size=200,
                    next_page_token=token,
                )
            )
            for event in page.history.events:
                yield event
            token = page.next_page_token
            if not token:
                return


async def polled(client: Client, task_queue: str) -> bool:
    """Whether Temporal lists a poller of the task queue's workflow tasks (one that stopped
    stays listed for a while)."""
    described = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
    )
    return len(described.pollers) > 0


def _is_reset(event: HistoryEvent) -> bool:
    """Whether the event is the workflow task a reset failed (where the new run begins)."""
    return (
        event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
        and event.workflow_task_failed_event_attributes.cause
        == WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_RESET_WORKFLOW
    )


def _not_reset(detail: str) -> SagaReset:
    return SagaReset(outcome=ResetOutcome.NOT_RESET, detail=detail)


def _words(err: BaseException) -> str:
    """A failure and its causes, outermost first: "Workflow execution failed: ..."."""
    words: list[str] = []
    cause: BaseException | None = err
    while cause is not None and len(words) < 5:
        words.append(str(cause) or type(cause).__name__)
        cause = cause.__cause__
    return ": ".join(words[1:] or words)
