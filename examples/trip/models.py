"""A trip: what a traveller asks for, and the answer they get."""

from pydantic import BaseModel, ConfigDict, Field

from temporal_saga import SagaResult

TripId = str


class Simulation(BaseModel):
    """What the example's providers do, so the engine's paths can be seen; a real saga's
    activities call real services instead."""

    model_config = ConfigDict(extra="forbid")

    # The payment is refused.
    payment_declined: bool = False
    # This step's provider answers after `slow_seconds`.
    slow_step: str | None = None
    slow_seconds: float = Field(default=0, ge=0, le=600)
    # Compensation name -> how many times it fails before it succeeds (a desk that is down).
    cancel_failures: dict[str, int] = {}


class TripRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    trip_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
    traveller: str = Field(min_length=1, max_length=200)
    flight: str = Field(min_length=1, max_length=100)
    hotel: str = Field(min_length=1, max_length=100)
    car: str = Field(min_length=1, max_length=100)
    amount_cents: int = Field(ge=1, le=100_000_000)
    # Not paid by then: the bookings are undone.
    deadline_seconds: int = Field(default=120, ge=1, le=86_400)
    # A cancellation still failing after this many attempts waits for an operator.
    attempts_before_attention: int = Field(default=3, ge=1, le=1000)
    simulate: Simulation = Simulation()


class Booking(BaseModel):
    booking_id: str
    kind: str
    what: str


class TripResult(SagaResult):
    trip_id: str


def trip_workflow_id(trip_id: str) -> str:
    return f"trip-{trip_id}"
