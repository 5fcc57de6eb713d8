"""Worker tuning from the settings: what is set is passed, the rest stays the SDK's, but for
two defaults of our own: workflow task polls scaled by the server, and the workflow sandbox
with our workflow libraries passed through."""

from typing import TypedDict

from temporalio.worker import (
    PollerBehaviorAutoscaling,
    PollerBehaviorSimpleMaximum,
    WorkflowRunner,
)
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from temporal_saga.worker import ENGINE_MODULES
from temporal_saga.worker import sandbox_runner as engine_sandbox
from worker.settings import Settings

# Passed through the workflow sandbox beside the engine: our workflow library, a module that
# defines no workflow and holds no state (the fan-out, its consumers' helpers with it). The
# modules that define workflows stay in the sandbox, which re-imports them for every run and
# checks their calls (tests/worker/test_sandbox_libraries.py holds the library to that).
APP_LIBRARIES = ("workflows.fanout",)
WORKFLOW_LIBRARIES = (*ENGINE_MODULES, *APP_LIBRARIES)


class WorkerTuning(TypedDict, total=False):
    max_concurrent_activities: int
    max_concurrent_workflow_tasks: int
    workflow_task_poller_behavior: PollerBehaviorAutoscaling | PollerBehaviorSimpleMaximum
    activity_task_poller_behavior: PollerBehaviorSimpleMaximum
    workflow_runner: WorkflowRunner


def worker_tuning(settings: Settings) -> WorkerTuning:
    tuning = WorkerTuning()
    if settings.worker_max_concurrent_activities is not None:
        tuning["max_concurrent_activities"] = settings.worker_max_concurrent_activities
    if settings.worker_max_concurrent_workflow_tasks is not None:
        tuning["max_concurrent_workflow_tasks"] = settings.worker_max_concurrent_workflow_tasks
    # Unless set, as many workflow task polls as the server's backlog asks for: a fixed few,
    # most of them waiting on the sticky queues of running workflows, would leave new
    # checkouts waiting in the queue for a poll.
    tuning["workflow_task_poller_behavior"] = (
        PollerBehaviorAutoscaling()
        if settings.worker_workflow_task_pollers is None
        else PollerBehaviorSimpleMaximum(settings.worker_workflow_task_pollers)
    )
    if settings.worker_activity_task_pollers is not None:
        tuning["activity_task_poller_behavior"] = PollerBehaviorSimpleMaximum(
            settings.worker_activity_task_pollers
        )
    tuning["workflow_runner"] = sandbox_runner()
    return tuning


def sandbox_runner() -> SandboxedWorkflowRunner:
    """The sandbox with our workflow libraries passed through."""
    return engine_sandbox(*APP_LIBRARIES)
