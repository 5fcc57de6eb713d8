"""The saga engine: declare a workflow's steps, compensations and pivot; get the rest.

See workflows/saga/workflow.py for what a saga gets, and docs/saga.md for the rules. The
client side (answers by update-with-start, status, operator commands) is
workflows/saga/client.py, which workflow code does not import.

The names below are imported when first used (PEP 562): the workflow sandbox imports a
workflow's modules anew for every run, and a module that needs one part of the engine (the
fan-out's consumers read failures and count metrics) should not pay for all of it.
"""

from typing import TYPE_CHECKING, Any

# The engine's library modules: they define no workflow and hold no state of their own, only
# the functions and classes a saga's workflow code calls, deterministic as the SDK's own
# `temporalio.workflow` is. A worker passes them through the workflow sandbox, as Temporal
# advises for "modules in separate files whose calls will be deterministic", instead of having
# the sandbox build them again for every workflow run (worker/tuning.py, docs/performance.md).
# A saga's own module, the one that holds its workflow class, stays in the sandbox.
LIBRARY_MODULES = (
    "workflows.saga.compensations",
    "workflows.saga.failures",
    "workflows.saga.local",
    "workflows.saga.metrics",
    "workflows.saga.search",
    "workflows.saga.steps",
    "workflows.saga.workflow",
)

if TYPE_CHECKING:
    from workflows.saga.compensations import (
        CompensationPolicy,
        run_to_completion,
    )
    from workflows.saga.failures import (
        UNAVAILABLE,
        Failure,
        read_failure,
    )
    from workflows.saga.search import (
        SAGA_STATUS,
        SAGA_STEP,
        SEARCH_ATTRIBUTES,
    )
    from workflows.saga.steps import (
        FOREVER_RETRY,
        STEP_RETRY,
        STEP_TIMEOUT,
        SagaDefinitionError,
        SagaFailure,
        SagaMisuse,
        Step,
    )
    from workflows.saga.workflow import (
        CANCELLED,
        COMPENSATION_RETRY,
        DEADLINE_EXCEEDED,
        SagaOptions,
        SagaWorkflow,
    )

# name -> the submodule that defines it
_SUBMODULES = {
    "CompensationPolicy": "compensations",
    "run_to_completion": "compensations",
    "UNAVAILABLE": "failures",
    "Failure": "failures",
    "read_failure": "failures",
    "SAGA_STATUS": "search",
    "SAGA_STEP": "search",
    "SEARCH_ATTRIBUTES": "search",
    "FOREVER_RETRY": "steps",
    "STEP_RETRY": "steps",
    "STEP_TIMEOUT": "steps",
    "SagaDefinitionError": "steps",
    "SagaFailure": "steps",
    "SagaMisuse": "steps",
    "Step": "steps",
    "CANCELLED": "workflow",
    "COMPENSATION_RETRY": "workflow",
    "DEADLINE_EXCEEDED": "workflow",
    "SagaOptions": "workflow",
    "SagaWorkflow": "workflow",
}

__all__ = [
    "CANCELLED",
    "COMPENSATION_RETRY",
    "DEADLINE_EXCEEDED",
    "FOREVER_RETRY",
    "SAGA_STATUS",
    "SAGA_STEP",
    "SEARCH_ATTRIBUTES",
    "STEP_RETRY",
    "STEP_TIMEOUT",
    "UNAVAILABLE",
    "CompensationPolicy",
    "Failure",
    "SagaDefinitionError",
    "SagaFailure",
    "SagaMisuse",
    "SagaOptions",
    "SagaWorkflow",
    "Step",
    "read_failure",
    "run_to_completion",
]


def __getattr__(name: str) -> Any:
    submodule = _SUBMODULES.get(name)
    if submodule is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    # Through __import__, which the sandbox hooks (importlib.import_module would go round it).
    module = __import__(f"{__name__}.{submodule}", fromlist=[name])
    value = getattr(module, name)
    globals()[name] = value  # looked up once
    return value
