"""What every saga answers and reports, whatever its steps.

The saga engine (workflows/saga) builds these; its clients and operators read them. A saga's
own models extend them with what identifies its business (its business key, say).
Extra fields are kept when a model is read as one of these, so an operator tool that knows no
saga type still shows them.
"""

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Generic, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator
from temporalio.client import WorkflowExecutionStatus


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
    # A nested saga's compensation: the child it waits for and how the child stands.
    waiting_for: str | None = None


class ChildSagaState(BaseModel):
    """A nested saga, as its parent's `status` shows it."""

    step: str
    workflow_id: str
    # The child's own SagaStatus (None until it reported), and its stuck compensations.
    status: SagaStatus | None = None
    stuck: list[str] = []


class ParentWord(StrEnum):
    """What a parent saga tells its nested saga once the child's steps are done."""

    COMMIT = "COMMIT"
    COMPENSATE = "COMPENSATE"


class ChildNews(BaseModel):
    """What a nested saga tells its parent: each change of its status, its result when its
    steps are done (`ready`) and when it ends (`final`). `seq` orders crossing signals."""

    step: str
    seq: int
    status: SagaStatus
    stuck: list[str] = []
    ready: dict[str, Any] | None = None
    final: dict[str, Any] | None = None


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
    # The steps running now (several while a group runs).
    running: list[str] = []
    steps_done: list[str] = []
    # Its nested sagas, as they last reported.
    children: list[ChildSagaState] = []
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

    @classmethod
    def of(cls, status: WorkflowExecutionStatus | None) -> "RunStatus":
        """Temporal's execution status in the engine's words; one it does not know is
        RUNNING: treated as alive, never touched."""
        return cls.__members__.get(status.name, cls.RUNNING) if status else cls.RUNNING


# A workflow type as the sweep puts it in a visibility query: no quote, no backslash.
WORKFLOW_TYPE_PATTERN = r"^[^'\"\\]+$"
WorkflowType = Annotated[str, Field(min_length=1, max_length=200, pattern=WORKFLOW_TYPE_PATTERN)]


class FindClosedRuns(BaseModel):
    """Runs that closed without finishing (terminated, timed out, failed) after
    `closed_after`: of `workflow_type`, or with `sagas_only` of every saga type (every
    workflow that set SagaStatus) but `exclude_types` and the repairs (`repair-...` ids)."""

    workflow_type: WorkflowType | None = None
    closed_after: datetime
    limit: int = Field(default=500, ge=1, le=10_000)
    sagas_only: bool = False
    exclude_types: list[WorkflowType] = Field(default=[], max_length=200)

    @model_validator(mode="after")
    def _some_type(self) -> Self:
        if self.workflow_type is None and not self.sagas_only:
            raise ValueError("workflow_type: required unless sagas_only (every saga type)")
        return self


class SagaRun(BaseModel):
    workflow_id: str
    status: RunStatus
    run_id: str | None = None
    workflow_type: str | None = None


class OwnRepair(BaseModel):
    """A saga type settled by a finder and a repair of its own (a saga with local-first
    steps needs them), instead of by a reset of its ended runs."""

    model_config = ConfigDict(extra="forbid")

    # The saga's workflow type; its finder activity (FindOpenSagas -> list[OpenSaga]) and its
    # repair workflow type.
    saga_type: WorkflowType
    finder: str = Field(min_length=1, max_length=200)
    repair: WorkflowType
    # Where the finder and the repair run (a worker of the saga's own); None: the sweep's
    # task queue. A sweep run by another team's worker finds them there.
    task_queue: str | None = Field(default=None, min_length=1, max_length=200)


class SweepRequest(BaseModel):
    """One sweep: which saga types, which of them have a finder and repair of their own (the
    others are settled by a reset of their ended runs), and how old is old.

    The form before `own_repairs` (`saga_type` with its `finder` and `repair`) is still read:
    it is that one saga type with its own finder and repair."""

    model_config = ConfigDict(extra="forbid")

    # One saga type (its workflow type), or None: every saga type.
    saga_type: WorkflowType | None = None
    own_repairs: list[OwnRepair] = Field(default=[], max_length=100)
    # Records opened longer ago than this are looked at (more than any deadline of the saga).
    older_than_seconds: int = Field(default=600, ge=0, le=30 * 86_400)
    # Runs that closed without finishing (terminated, timed out, failed) this recently are
    # looked at: repaired once each even with no record open (a confirmed one may not have
    # announced), or reset.
    closed_within_seconds: int = Field(default=86_400, ge=0, le=30 * 86_400)
    dry_run: bool = False
    # How long the sweep waits for the repairs it started, and for the runs it reset, before
    # it reports them as still running.
    wait_seconds: int = Field(default=60, ge=0, le=3600)
    limit: int = Field(default=500, ge=1, le=10_000)

    @model_validator(mode="before")
    @classmethod
    def _finder_and_repair(cls, data: Any) -> Any:
        """The earlier form: `saga_type` with its `finder` and `repair`, as one own repair."""
        if not isinstance(data, dict) or not {"finder", "repair"} & data.keys():
            return data
        data = dict(data)
        finder, repair = data.pop("finder", None), data.pop("repair", None)
        if finder is None or repair is None or data.get("saga_type") is None:
            raise ValueError(
                "finder and repair: give both, with the saga_type they are of (or list them "
                "in own_repairs)"
            )
        own = {"saga_type": data["saga_type"], "finder": finder, "repair": repair}
        data["own_repairs"] = [*data.get("own_repairs", []), own]
        return data

    @model_validator(mode="after")
    def _one_repair_per_type(self) -> Self:
        types = [own.saga_type for own in self.own_repairs]
        if twice := sorted({t for t in types if types.count(t) > 1}):
            raise ValueError(f"own_repairs: saga type {', '.join(twice)} given more than once")
        repairs = {own.repair for own in self.own_repairs}
        if self.saga_type is not None and self.saga_type in repairs:
            raise ValueError(f"saga_type: {self.saga_type} is a repair, not a saga")
        return self

    @property
    def swept_own_repairs(self) -> list[OwnRepair]:
        """The own repairs this sweep runs: all, or that of `saga_type`."""
        return [o for o in self.own_repairs if self.saga_type in (None, o.saga_type)]

    @property
    def resets(self) -> bool:
        """Whether this sweep resets ended runs: unless narrowed to a type with its own
        repair."""
        return self.saga_type not in {o.saga_type for o in self.own_repairs}


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
    # Dry run: the ended run would have been reset, and its new run cancelled.
    WOULD_RESET = "would_reset"
    # Reset to its last completed workflow task, the new run cancelled: `reset` says how it
    # went.
    RESET = "reset"


class ResetOutcome(StrEnum):
    """What became of a saga the sweep reset (its new run, cancelled)."""

    # It completed REJECTED: the pivot was not reached, its compensations ran.
    COMPENSATED = "compensated"
    # It completed CONFIRMED: the pivot had started, its own code went on after it.
    WENT_FORWARD = "went_forward"
    # Not done within the sweep's wait: it goes on (a stuck compensation waits for an
    # operator, as in any saga).
    STILL_RUNNING = "still_running"
    # The new run closed without completing (its code failed again, it timed out, it was
    # terminated): reported once; the sweep never resets a run it made.
    FAILED_AGAIN = "failed_again"
    # Temporal refused the reset (no history left, no completed workflow task), or the
    # saga's run changed meanwhile (a newer run, or one reset by someone else).
    NOT_RESET = "not_reset"


class ResetRun(BaseModel):
    """Reset `run_id` of `workflow_id` (its latest run, closed without finishing) and cancel
    the new run; `reason` is the reset's."""

    workflow_id: str = Field(min_length=1)
    run_id: str = Field(min_length=1)
    reason: str = Field(min_length=1, max_length=1000)


class AwaitRun(BaseModel):
    """Wait up to `wait_seconds` for `run_id` of `workflow_id` to close."""

    workflow_id: str = Field(min_length=1)
    run_id: str = Field(min_length=1)
    wait_seconds: int = Field(ge=0, le=3600)


class SagaReset(BaseModel):
    """A saga the sweep reset: the new run, and what became of it."""

    outcome: ResetOutcome
    # The new run (None when not reset).
    run_id: str | None = None
    # Why (for not_reset and failed_again), or the decision's reason.
    detail: str | None = None
    # From the new run's result, when it completed.
    steps_done: list[str] = []
    compensations_done: list[str] = []


class ClosedSaga(BaseModel):
    """A saga found by a run that closed without finishing: its latest run."""

    workflow_id: str
    run: SagaRun
    # A run the sweep made by a reset, running, whose cancellation it has not requested yet.
    cancel_pending: bool = False


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
    # The saga's workflow type (None in reports from before it was given).
    saga_type: str | None = None
    run_status: RunStatus
    records: list[str]
    action: SweepAction
    repair_workflow_id: str | None = None
    repair: RepairResult | None = None
    reset: SagaReset | None = None


class SweepReport(BaseModel):
    # The finder asked, when the sweep asked one (the first of `finders`).
    finder: str | None = None
    finders: list[str] = []
    # The saga type the sweep was narrowed to (None: every saga type).
    saga_type: str | None = None
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
