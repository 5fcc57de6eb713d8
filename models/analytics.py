"""Analytics: counts of order events per type, each event counted once."""

from pydantic import BaseModel, Field

from models.checkout import MAX_ORDER_TOTAL_CENTS
from models.common import Currency, IdempotencyKey, OrderId
from models.events import OrderConfirmed, OrderRejected


class RecordEvent(BaseModel):
    event_id: IdempotencyKey
    event_type: str = Field(pattern=r"^[A-Za-z]{1,64}$")
    order_id: OrderId
    # Bounded like an order's total (and so SQLite's integers).
    total_cents: int = Field(ge=0, le=MAX_ORDER_TOTAL_CENTS)
    currency: Currency


class RecordedEvent(RecordEvent):
    recorded_at: str


class EventCounts(BaseModel):
    """Events counted per type, e.g. {"OrderConfirmed": 9, "OrderRejected": 3}."""

    counts: dict[str, int]
    total: int


def record_for(event: OrderConfirmed | OrderRejected) -> RecordEvent:
    return RecordEvent(
        event_id=event.event_id,
        event_type=event.type,
        order_id=event.order_id,
        total_cents=event.total_cents,
        currency=event.currency,
    )
