"""What every saga answers and reports, whatever its steps.

The saga engine (workflows/saga) builds these; its clients and operators read them. A saga's
own models extend them with what identifies its business (its business key, say).
Extra fields are kept when a model is read as one of these, so an operator tool that knows no
saga type still shows them.
"""

from datetime import datetime
from enum import StrEnum
from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field


class Outcome(StrEnum):
    """The decision: the pivot succeeded (nothing undoes it), or everything was undone."""

    CONFIRMED = "CONFIRMED"
    REJECTED = "REJECTED"


class SagaStatus(StrEnum):
    """Where a saga is; also its `SagaStatus` search attribute."""

    RUNNING = "RUNNING"
    COMPENSATING = "COMPENSATING"
    # A compensation is stuck: a person must retry or skip it.
    NEEDS_ATTENTION = "NEEDS_ATTENTION"
    CONFIRMED = "CONFIRMED"
    REJECTED = "REJECTED"
    # A repair (of a saga that ended without settling its records) that is done.
    REPAIRED = "REPAIRED"


class CompensationState(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    STUCK = "STUCK"
    DONE = "DONE"
    SKIPPED = "SKIPPED"
    # Failed for good and left (only with continue_with_error).
    FAILED = "FAILED"


class CompensationReport(BaseModel):
    name: str
    state: CompensationState
    attempts: int
    last_error: str | None = None
    # Why an operator skipped it, if they did.
    skip_reason: str | None = None


class SagaResult(BaseModel):
    """A saga's answer: the decision, and what was done and undone to reach it."""

    model_config = ConfigDict(extra="allow")

    status: Outcome
    # The step that failed (or was running when the saga was cancelled or ran out of time).
    failed_step: str | None = None
    # Machine-readable reason (the business error's type), and the words for a person.
    reason_code: str | None = None
    reason: str | None = None
    steps_done: list[str] = []
    compensations_done: list[str] = []
    compensations: list[CompensationReport] = []


ResultT = TypeVar("ResultT", bound=SagaResult)


class SagaProgress(BaseModel, Generic[ResultT]):
    """The `status` query of every saga: where it is, for operators and tools."""

    model_config = ConfigDict(extra="allow")

    status: SagaStatus
    current_step: str | None = None
    steps_done: list[str] = []
    # Empty until the saga compensates.
    compensations: list[CompensationReport] = []
    stuck: list[str] = []
    decision: ResultT | None = None
    # What the client's `status` adds from Temporal; the query itself leaves them None.
    # How the latest run stands: the query of a closed run replays a history that has no
    # ending, so a terminated run still says RUNNING above.
    run_status: "RunStatus | None" = None
    # Why a closed run's query went unanswered: the status and step above are then the
    # run's last SagaStatus and SagaStep search attributes.
    query_error: str | None = None
    # A run that ended without finishing: the reconciler's repair of it, if one started.
    repair: "SagaRepairState | None" = None


class CancelSaga(BaseModel):
    """The `cancel` update: refused once the pivot started."""

    reason: str = Field(default="cancelled on request", min_length=1, max_length=500)


class SkipCompensation(BaseModel):
    """The `skip_compensation` update: an operator gives up on a stuck compensation."""

    reason: str = Field(min_length=1, max_length=500)
    # Which one; may be left out when only one is stuck.
    name: str | None = None


# -- reconciliation: sagas that ended without settling what they opened --------------------


class FindOpenSagas(BaseModel):
    """What a saga's finder is asked: its business records still open since before `before`."""

    before: datetime
    limit: int = Field(default=500, ge=1, le=10_000)


class OpenSaga(BaseModel):
    """A saga whose records are still open: its workflow id, and which records."""

    workflow_id: str
    # E.g. "order:o1 PENDING", "reservation:r1 RESERVED": the saga's own words for them.
    records: list[str] = Field(min_length=1)
    # When the oldest of them was opened.
    opened_at: datetime


class RunStatus(StrEnum):
    """The latest run of a saga's workflow id, as Temporal describes it."""

    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"
    TERMINATED = "TERMINATED"
    CONTINUED_AS_NEW = "CONTINUED_AS_NEW"
    TIMED_OUT = "TIMED_OUT"
    # No workflow with that id (never started, or its history is past retention).
    MISSING = "MISSING"


class FindClosedRuns(BaseModel):
    """Runs of `workflow_type` that closed without finishing, after `closed_after`."""

    workflow_type: str
    closed_after: datetime
    limit: int = Field(default=500, ge=1, le=10_000)


class SagaRun(BaseModel):
    workflow_id: str
    status: RunStatus
    run_id: str | None = None
    workflow_type: str | None = None


class SweepRequest(BaseModel):
    """One sweep of one saga type: which finder and which repair, and how old is old."""

    model_config = ConfigDict(extra="forbid")

    # The saga's workflow type; its finder activity (FindOpenSagas -> list[OpenSaga]) and its
    # repair workflow type.
    saga_type: str = Field(min_length=1, max_length=200)
    finder: str = Field(min_length=1, max_length=200)
    repair: str = Field(min_length=1, max_length=200)
    # Records opened longer ago than this are looked at (more than any deadline of the saga).
    older_than_seconds: int = Field(default=600, ge=0, le=30 * 86_400)
    # Runs that closed without finishing (terminated, timed out, failed) this recently are
    # repaired once each, even with no record open (a confirmed one may not have announced).
    closed_within_seconds: int = Field(default=86_400, ge=0, le=30 * 86_400)
    dry_run: bool = False
    # How long the sweep waits for the repairs it started before it reports them as running.
    wait_seconds: int = Field(default=60, ge=0, le=3600)
    limit: int = Field(default=500, ge=1, le=10_000)


class SweepAction(StrEnum):
    # The saga's latest run is still running: it settles its records itself.
    LEFT_RUNNING = "left_running"
    # Its latest run finished: what it left open was left so on purpose (an operator skipped
    # a compensation), or by a run reset away from and done again; not the sweep's to undo.
    LEFT_COMPLETED = "left_completed"
    # Dry run: a repair would have started.
    WOULD_REPAIR = "would_repair"
    REPAIRED = "repaired"
    # Started (or already running) and not done within the sweep's wait: it goes on; if it is
    # stuck it waits in NEEDS_ATTENTION like any saga.
    REPAIRING = "repairing"


class AbandonedSaga(BaseModel):
    """A repair's input: the saga whose run ended without settling its records."""

    workflow_id: str
    run: SagaRun
    records: list[str]


class RepairResult(BaseModel):
    workflow_id: str
    # What became of the saga's business (e.g. "cancelled", "confirmed").
    outcome: str
    # The actions the repair took, in order (each idempotent, keyed as the saga keyed it).
    actions: list[str] = []
    skipped: list[str] = []


class SweepEntry(BaseModel):
    workflow_id: str
    run_status: RunStatus
    records: list[str]
    action: SweepAction
    repair_workflow_id: str | None = None
    repair: RepairResult | None = None


class SweepReport(BaseModel):
    finder: str
    before: datetime
    dry_run: bool
    entries: list[SweepEntry] = []

    def count(self, action: SweepAction) -> int:
        return sum(1 for entry in self.entries if entry.action is action)


# -- the client's `status` of a saga whose run ended without finishing ----------------------


class SagaRepairState(BaseModel):
    """The reconciler's repair of a saga (its workflow `repair-{workflow_id}`): its latest
    run, and its result once it completed, or where it is while it runs."""

    workflow_id: str
    run_status: RunStatus
    result: RepairResult | None = None
    # While it runs: its SagaStatus (NEEDS_ATTENTION when an action is stuck) and SagaStep.
    status: SagaStatus | None = None
    current_step: str | None = None
    # Why its result could not be read.
    error: str | None = None


SagaProgress.model_rebuild()
