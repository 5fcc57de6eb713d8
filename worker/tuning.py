"""Worker tuning from the settings: only what is set is passed, the rest stays the SDK's."""

from typing import TypedDict

from temporalio.worker import PollerBehaviorSimpleMaximum, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from worker.settings import Settings

# Passed through the workflow sandbox with `worker_sandbox_passthrough` (off by default).
PASSTHROUGH_MODULES = ("workflows",)


class WorkerTuning(TypedDict, total=False):
    max_concurrent_activities: int
    max_concurrent_workflow_tasks: int
    workflow_task_poller_behavior: PollerBehaviorSimpleMaximum
    activity_task_poller_behavior: PollerBehaviorSimpleMaximum
    workflow_runner: WorkflowRunner


def worker_tuning(settings: Settings) -> WorkerTuning:
    tuning = WorkerTuning()
    if settings.worker_max_concurrent_activities is not None:
        tuning["max_concurrent_activities"] = settings.worker_max_concurrent_activities
    if settings.worker_max_concurrent_workflow_tasks is not None:
        tuning["max_concurrent_workflow_tasks"] = settings.worker_max_concurrent_workflow_tasks
    if settings.worker_workflow_task_pollers is not None:
        tuning["workflow_task_poller_behavior"] = PollerBehaviorSimpleMaximum(
            settings.worker_workflow_task_pollers
        )
    if settings.worker_activity_task_pollers is not None:
        tuning["activity_task_poller_behavior"] = PollerBehaviorSimpleMaximum(
            settings.worker_activity_task_pollers
        )
    if settings.worker_sandbox_passthrough:
        tuning["workflow_runner"] = SandboxedWorkflowRunner(
            restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH_MODULES)
        )
    return tuning
