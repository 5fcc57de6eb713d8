"""What Temporal knows of a saga's workflow id: the engine's activities for the reconciler.

They hold a Temporal client (an activity may; workflow code may not): the latest run's status,
and that run's input, decoded by the client's data converter (so through the payload codec).
"""

from datetime import UTC
from typing import Any

from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from temporal_saga.models import FindClosedRuns, RunStatus, SagaRun

_STATUS = {
    WorkflowExecutionStatus.RUNNING: RunStatus.RUNNING,
    WorkflowExecutionStatus.COMPLETED: RunStatus.COMPLETED,
    WorkflowExecutionStatus.FAILED: RunStatus.FAILED,
    WorkflowExecutionStatus.CANCELED: RunStatus.CANCELED,
    WorkflowExecutionStatus.TERMINATED: RunStatus.TERMINATED,
    WorkflowExecutionStatus.CONTINUED_AS_NEW: RunStatus.CONTINUED_AS_NEW,
    WorkflowExecutionStatus.TIMED_OUT: RunStatus.TIMED_OUT,
}


class SagaRuns:
    def __init__(self, client: Client) -> None:
        self._client = client

    @activity.defn(name="describe_saga_run")
    async def describe_saga_run(self, workflow_id: str) -> SagaRun:
        """The latest run of `workflow_id` (MISSING when Temporal has none)."""
        try:
            described = await self._client.get_workflow_handle(workflow_id).describe()
        except RPCError as err:
            if err.status is RPCStatusCode.NOT_FOUND:
                return SagaRun(workflow_id=workflow_id, status=RunStatus.MISSING)
            raise
        status = _STATUS.get(described.status) if described.status else None
        return SagaRun(
            workflow_id=workflow_id,
            status=status or RunStatus.RUNNING,  # unknown: treated as alive, never touched
            run_id=described.run_id,
            workflow_type=described.workflow_type,
        )

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
        query = (
            f"WorkflowType = '{request.workflow_type}'"
            " AND ExecutionStatus IN ('Terminated', 'TimedOut', 'Failed')"
            f" AND CloseTime > '{closed_after}'"
        )
        found: dict[str, None] = {}
        async for execution in self._client.list_workflows(query, limit=request.limit):
            found[execution.id] = None
        return list(found)

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
            self.count_needing_attention,
        ]
