"""The saga engine: declare a workflow's steps, compensations and pivot; get the rest.

See workflows/saga/workflow.py for what a saga gets, and docs/saga.md for the rules. The
client side (answers by update-with-start, status, operator commands) is
workflows/saga/client.py, which workflow code does not import.
"""

from workflows.saga.compensations import CompensationPolicy, run_to_completion
from workflows.saga.failures import UNAVAILABLE, Failure, read_failure
from workflows.saga.search import SAGA_STATUS, SAGA_STEP, SEARCH_ATTRIBUTES
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
