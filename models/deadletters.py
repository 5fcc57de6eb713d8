"""Dead letters: events a consumer could not handle within its retry budget.

One record per (event, consumer), id `{event_id}:{consumer}`. A consumer that fails again
after a redrive reopens the same record (failures + 1), so the store never fills with copies.
"""

from enum import StrEnum

from pydantic import BaseModel, Field

from models.common import IdempotencyKey
from models.events import OrderEvent

# A consumer's name: receipt, shipping, loyalty, analytics.
ConsumerName = str


class ConsumerKind(StrEnum):
    # A job: a child workflow per event (SendReceipt, ShipOrder); redrive starts it again
    # under a new id `{job_id}:redrive-{n}`.
    JOB = "job"
    # A reaction: a signal to a long-lived workflow (CustomerLoyalty, Analytics); redrive
    # signals (with start) again, and the workflow's dedup lets it through because the event
    # was never marked done.
    SIGNAL = "signal"


class DeliveryTarget(BaseModel):
    """Where the event goes: enough to deliver it again without the announcing workflow."""

    kind: ConsumerKind
    workflow_type: str = Field(min_length=1, max_length=200)
    # The job's own workflow id, or the long-lived workflow's id.
    workflow_id: str = Field(min_length=1, max_length=400)
    signal: str | None = Field(default=None, max_length=200)
    task_queue: str = Field(min_length=1, max_length=200)


class DeadLetterStatus(StrEnum):
    OPEN = "OPEN"
    REDRIVEN = "REDRIVEN"


MAX_COUNT = 1_000_000


class NewDeadLetter(BaseModel):
    """What a consumer writes when it gives up: the event, who failed, why, how often."""

    letter_id: IdempotencyKey
    # Unique per failure (workflow.uuid4() where it failed): a retried write of the same failure
    # counts once.
    failure_id: str = Field(min_length=1, max_length=64)
    consumer: ConsumerName = Field(min_length=1, max_length=64)
    event: OrderEvent
    target: DeliveryTarget
    error: str = Field(min_length=1, max_length=4000)
    # Bounded (as SQLite's integers must be); far beyond any retry policy here.
    attempts: int = Field(ge=1, le=MAX_COUNT)
    # Which redrive failed (0: the first delivery), so a failing redrive n reopens the record
    # and the next one is n + 1.
    redrive: int = Field(default=0, ge=0, le=MAX_COUNT)


class DeadLetter(NewDeadLetter):
    status: DeadLetterStatus
    failures: int
    redrives: int
    first_failed_at: str
    last_failed_at: str
    redriven_at: str | None = None


class MarkRedriven(BaseModel):
    """Body of POST /deadletters/{id}/redriven: redrive `redrive` was delivered."""

    redrive: int = Field(ge=1, le=MAX_COUNT)


def letter_id(event_id: str, consumer: str) -> str:
    return f"{event_id}:{consumer}"


class Delivery(BaseModel):
    """An event and where to signal it: the input of the signal-with-start activity."""

    target: DeliveryTarget
    event: OrderEvent


def redrive_workflow_id(job_workflow_id: str, redrive: int) -> str:
    """The id of a job's n-th redrive: `{event_id}:{consumer}:redrive-{n}`, new per redrive,
    the same for a repeat of that redrive (so it starts once)."""
    return f"{job_workflow_id}:redrive-{redrive}"
