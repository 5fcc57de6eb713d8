"""How a saga runs, beyond its steps: its deadline, how its compensations are retried, its
own search attributes. Plain data, so the workflow sandbox passes it through instead of
building these classes for every run (engine/temporal_saga/workflow.py reads them)."""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from temporalio.common import RetryPolicy, SearchAttributeUpdate

# Each call of a compensation gets a few quick attempts; the saga retries the call with its
# own backoff and asks a person when it stays stuck (CompensationPolicy).
COMPENSATION_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=500),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=2),
    maximum_attempts=3,
)


@dataclass(frozen=True)
class CompensationPolicy:
    """Retries of a failing compensation, and when to stop and ask a person."""

    initial_backoff: timedelta = timedelta(seconds=1)
    backoff_coefficient: float = 2.0
    maximum_backoff: timedelta = timedelta(seconds=30)
    # None: retry forever without asking anyone.
    attempts_before_attention: int | None = 10
    parallel: bool = False
    continue_with_error: bool = False

    def backoff(self, failed_attempts: int) -> timedelta:
        seconds = self.initial_backoff.total_seconds() * self.backoff_coefficient ** (
            failed_attempts - 1
        )
        return min(timedelta(seconds=seconds), self.maximum_backoff)


@dataclass(frozen=True)
class SagaOptions:
    # Not past the pivot by then: compensate and answer REJECTED (deadline_exceeded).
    deadline: timedelta | None = None
    compensation: CompensationPolicy = field(default_factory=CompensationPolicy)
    # The retries of one call of a compensation (the saga then retries the call).
    compensation_retry: RetryPolicy = field(default_factory=lambda: COMPENSATION_RETRY)
    # The saga's own search attributes (register them on the cluster), upserted with the first
    # change of SagaStatus/SagaStep.
    search_attributes: Sequence[SearchAttributeUpdate[Any]] = ()
    # The command your operators run for a stuck compensation, shown on the saga's page in
    # the Web UI as `<it> retry|skip --workflow-id ID --compensation NAME [--reason R]`.
    # None: the Temporal CLI's `temporal workflow update execute` of the saga's update.
    attention_command: str | None = None
