"""The client side of the saga engine, for any saga: its answer by update-with-start, its
status, and what operators send it. Workflow code never imports this module.

A saga's own types come from its class (`SagaWorkflow[Input, Result, Progress]`); a tool
that knows no saga type reads the engine's models, which keep the saga's own fields as extras.
"""

import contextlib
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from temporalio.api.common.v1 import Payload
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
    WorkflowHandle,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from temporal_saga.models import (
    CancelSaga,
    RunStatus,
    SagaProgress,
    SagaResult,
    SkipCompensation,
    SweepReport,
    SweepRequest,
)
from temporal_saga.reconcile import NEEDS_ATTENTION_QUERY, SWEEP_WORKFLOW
from temporal_saga.workflow import SagaWorkflow

InputT = TypeVar("InputT")
ResultT = TypeVar("ResultT", bound=SagaResult)
ProgressT = TypeVar("ProgressT", bound=SagaProgress[Any])


AnyProgress = SagaProgress[SagaResult]


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
        handle = saga_handle(client, saga, workflow_id)
        return await handle.result(), handle
    except (RPCError, WorkflowUpdateRPCTimeoutOrCancelledError):
        # The server was unreachable or the call timed out: the caller may call again (same
        # id). The start operation holds the same error; retrieved so it isn't logged.
        with contextlib.suppress(RPCError, WorkflowUpdateRPCTimeoutOrCancelledError):
            await start.workflow_handle()
        raise


def saga_handle(
    client: Client, saga: type[SagaWorkflow[Any, ResultT]], workflow_id: str
) -> WorkflowHandle[Any, ResultT]:
    """The handle of one saga of a known type: its result decodes as the saga's."""
    result_type: type[ResultT] = saga._result_type  # type: ignore[assignment]
    return client.get_workflow_handle(workflow_id, result_type=result_type)


async def status(client: Client, workflow_id: str, progress_type: type[ProgressT]) -> ProgressT:
    """The `status` query of any saga (its own fields kept as extras of the engine's)."""
    progress: ProgressT = await client.get_workflow_handle(workflow_id).query(
        "status", result_type=progress_type
    )
    return progress


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
    workflow_id: str
    workflow_type: str
    progress: AnyProgress


async def needing_attention(client: Client, limit: int, query: str = "") -> list[Stuck]:
    """Every saga in NEEDS_ATTENTION (of any type, by the SagaStatus search attribute), with
    its status; `query`: more of a visibility query to narrow it (`AND ...`)."""
    found = []
    async for execution in client.list_workflows(
        f"{NEEDS_ATTENTION_QUERY} {query}".strip(), limit=limit
    ):
        progress = await status(client, execution.id, AnyProgress)
        found.append(Stuck(execution.id, execution.workflow_type, progress))
    return found


async def ensure_sweep_schedule(
    client: Client,
    *,
    schedule_id: str,
    request: SweepRequest,
    every: timedelta,
    task_queue: str,
) -> str:
    """The Temporal Schedule that runs `request`'s sweep every `every`, created by whichever
    worker comes first (any number may call this: a second finds it and updates its
    interval and request to this call's). Overlap SKIP: a sweep still running when the next
    is due makes that one skip. Returns "created", "updated" or "unchanged"."""
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


async def sweep_now(
    client: Client, request: SweepRequest, task_queue: str, workflow_id: str | None = None
) -> SweepReport:
    """One sweep, now, outside the schedule (a new workflow id unless given); its report."""
    report: SweepReport = await client.execute_workflow(
        SWEEP_WORKFLOW,
        request,
        id=workflow_id or f"{SWEEP_WORKFLOW.lower()}-{uuid.uuid4().hex[:12]}",
        task_queue=task_queue,
        result_type=SweepReport,
    )
    return report
