"""What Temporal knows of a saga's workflow id: the engine's activities for the reconciler.

They hold a Temporal client (an activity may; workflow code may not): the latest run's status,
and that run's input, decoded by the client's data converter (so through the payload codec).
"""

from typing import Any

from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from models.saga import RunStatus, SagaRun

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
            async for event in handle.fetch_history_events():
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

    def all(self) -> list[Any]:
        return [self.describe_saga_run, self.saga_input]
