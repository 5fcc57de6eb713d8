"""An order and its shipment: what a customer asks for, and the answers they get."""

from pydantic import BaseModel, ConfigDict, Field

from temporal_saga import SagaResult

# The steps of both sagas and the compensations, as the simulation names them.
STEPS = ("reserve_stock", "book_pickup", "book_delivery", "charge")
CANCELS = ("release_stock", "cancel_pickup", "cancel_delivery")
CARRIERS = {"a": "book_pickup", "b": "book_delivery"}


class Simulation(BaseModel):
    """What the example's stock desk, carriers and payment desk do, so the engine's paths can
    be seen; a real saga's activities call real services instead."""

    model_config = ConfigDict(extra="forbid")

    # The charge is refused (after the shipping was booked).
    charge_declined: bool = False
    # This carrier refuses its booking for good: "a" (pickup) or "b" (delivery).
    refusing_carrier: str | None = Field(default=None, pattern=r"^[ab]$")
    # This step answers after `slow_seconds` (time to cancel the order mid-way).
    slow_step: str | None = None
    slow_seconds: float = Field(default=0, ge=0, le=600)
    # Compensation name -> how many times it fails before it succeeds (a desk that is down;
    # more than the order's attempts_before_attention, and it waits for an operator).
    cancel_failures: dict[str, int] = {}


class Shipment(BaseModel):
    """The nested saga's input: what the carriers are asked to move."""

    model_config = ConfigDict(extra="forbid")

    order_id: str
    address: str
    attempts_before_attention: int = Field(default=3, ge=1, le=1000)
    simulate: Simulation = Simulation()


class OrderRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    order_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
    sku: str = Field(min_length=1, max_length=100)
    quantity: int = Field(default=1, ge=1, le=1000)
    address: str = Field(min_length=1, max_length=300)
    amount_cents: int = Field(ge=1, le=100_000_000)
    # Not charged by then: the shipping and the stock are undone.
    deadline_seconds: int = Field(default=120, ge=1, le=86_400)
    # A compensation still failing after this many attempts waits for an operator.
    attempts_before_attention: int = Field(default=3, ge=1, le=1000)
    simulate: Simulation = Simulation()

    def shipment(self) -> Shipment:
        return Shipment(
            order_id=self.order_id,
            address=self.address,
            attempts_before_attention=self.attempts_before_attention,
            simulate=self.simulate,
        )


class Booking(BaseModel):
    booking_id: str
    kind: str


class ShippingResult(SagaResult):
    order_id: str


class OrderResult(SagaResult):
    order_id: str


def order_workflow_id(order_id: str) -> str:
    return f"shipped-order-{order_id}"


def shipping_workflow_id(order_id: str) -> str:
    """The nested saga's id: the engine names it `<parent id>/<step>`."""
    return f"{order_workflow_id(order_id)}/shipping"
