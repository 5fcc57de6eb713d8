"""What the fan-out's consumers report and carry: job outcomes, the announcement's report,
and the state long-lived consumer workflows carry across continue-as-new."""

from enum import StrEnum

from pydantic import BaseModel, Field


class ConsumerStatus(StrEnum):
    DONE = "done"
    # Failed past its retry budget; a dead letter records it for a redrive.
    DEAD_LETTERED = "dead_lettered"


class ConsumerResult(BaseModel):
    consumer: str
    event_id: str
    status: ConsumerStatus
    attempts: int = 1
    error: str | None = None


class Announcement(BaseModel):
    """What `announce` did. Nothing in it is an error of the caller's: it is for logs/tests."""

    event_id: str
    # Child workflow ids of the jobs started now, and of those a previous announcement started.
    jobs_started: list[str] = []
    jobs_already_started: list[str] = []
    # Workflow ids of the long-lived workflows signalled (with start).
    signalled: list[str] = []
    # Consumers whose job could not be started or whose signal could not be delivered (each
    # written as a dead letter when the store answered).
    failed: list[str] = []


DEFAULT_CONTINUE_AFTER = 500
DEFAULT_REMEMBER = 1000


class LongLivedState(BaseModel):
    """Carried from one run to the next by continue-as-new."""

    # Ids of the events already handled, oldest first; the last `remember` are kept.
    seen: list[str] = []
    received: int = 0
    applied: int = 0
    duplicates_ignored: int = 0
    dead_lettered: int = 0
    # Runs so far of this workflow id (1 + continue-as-news).
    generation: int = 1
    # Continue as new after this many signals in one run (or when Temporal suggests it).
    continue_after: int = Field(default=DEFAULT_CONTINUE_AFTER, ge=1, le=10_000)
    remember: int = Field(default=DEFAULT_REMEMBER, ge=1, le=100_000)


class LoyaltyState(LongLivedState):
    points_awarded: int = 0


class AnalyticsState(LongLivedState):
    counts: dict[str, int] = {}
