"""temporal_saga: a saga engine on Temporal. Declare a workflow's steps, what undoes each and
its pivot; the engine gives it the rest (docs/saga.md in the repository, "Adopt the engine").

The whole package is a library of deterministic code with no state of its own: a worker
passes it through the workflow sandbox (`temporal_saga.worker.saga_worker` does), as
Temporal advises for such modules, and a saga's own module stays in the sandbox.
"""

from temporalio import workflow

# Plain data: passed through the sandbox even where the engine is not (a worker with the SDK's
# default sandbox), so that a saga's models, imported from outside, and the engine's agree.
with workflow.unsafe.imports_passed_through():
    import temporal_saga.failures
    import temporal_saga.models
    import temporal_saga.options  # noqa: F401

from temporal_saga.client import (
    NoSweepWorker,
    SagaEnded,
    Stuck,
    cancel,
    decide,
    ensure_sweep_schedule,
    needing_attention,
    retry_compensation,
    saga_handle,
    skip_compensation,
    status,
    sweep_now,
)
from temporal_saga.compensations import run_to_completion
from temporal_saga.failures import UNAVAILABLE, Failure, SagaFailure, read_failure
from temporal_saga.models import (
    AbandonedSaga,
    CancelSaga,
    ChildSagaState,
    CompensationReport,
    CompensationState,
    FindOpenSagas,
    OpenSaga,
    Outcome,
    OwnRepair,
    RepairResult,
    ResetOutcome,
    RunStatus,
    SagaProgress,
    SagaReset,
    SagaResult,
    SagaRun,
    SagaStatus,
    SkipCompensation,
    SweepAction,
    SweepEntry,
    SweepReport,
    SweepRequest,
)
from temporal_saga.nested import ChildSaga
from temporal_saga.options import COMPENSATION_RETRY, CompensationPolicy, SagaOptions
from temporal_saga.reconcile import SWEEP_WORKFLOW, SagaRepair, SagaSweepWorkflow
from temporal_saga.runs import SagaRuns
from temporal_saga.search import SAGA_STATUS, SAGA_STEP, SEARCH_ATTRIBUTES
from temporal_saga.steps import (
    FOREVER_RETRY,
    STEP_RETRY,
    STEP_TIMEOUT,
    Group,
    SagaDefinitionError,
    SagaMisuse,
    Step,
    StepCall,
)
from temporal_saga.workflow import (
    CANCELLED,
    DEADLINE_EXCEEDED,
    PARENT_COMPENSATED,
    SagaWorkflow,
)

__all__ = [
    "CANCELLED",
    "COMPENSATION_RETRY",
    "DEADLINE_EXCEEDED",
    "FOREVER_RETRY",
    "PARENT_COMPENSATED",
    "SAGA_STATUS",
    "SAGA_STEP",
    "SEARCH_ATTRIBUTES",
    "STEP_RETRY",
    "STEP_TIMEOUT",
    "SWEEP_WORKFLOW",
    "UNAVAILABLE",
    "AbandonedSaga",
    "CancelSaga",
    "ChildSaga",
    "ChildSagaState",
    "CompensationPolicy",
    "CompensationReport",
    "CompensationState",
    "Failure",
    "FindOpenSagas",
    "Group",
    "NoSweepWorker",
    "OpenSaga",
    "Outcome",
    "OwnRepair",
    "RepairResult",
    "ResetOutcome",
    "RunStatus",
    "SagaDefinitionError",
    "SagaEnded",
    "SagaFailure",
    "SagaMisuse",
    "SagaOptions",
    "SagaProgress",
    "SagaRepair",
    "SagaReset",
    "SagaResult",
    "SagaRun",
    "SagaRuns",
    "SagaStatus",
    "SagaSweepWorkflow",
    "SagaWorkflow",
    "SkipCompensation",
    "Step",
    "StepCall",
    "Stuck",
    "SweepAction",
    "SweepEntry",
    "SweepReport",
    "SweepRequest",
    "cancel",
    "decide",
    "ensure_sweep_schedule",
    "needing_attention",
    "read_failure",
    "retry_compensation",
    "run_to_completion",
    "saga_handle",
    "skip_compensation",
    "status",
    "sweep_now",
]
