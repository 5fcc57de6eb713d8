"""Email: the messages sent to customers (receipts), one per event."""

from pydantic import BaseModel, Field

from models.common import Email, IdempotencyKey, OrderId
from models.events import OrderConfirmed


class SendEmail(BaseModel):
    # The idempotency key: the event's id. A repeat sends nothing and answers the first mail.
    email_id: IdempotencyKey
    order_id: OrderId
    to: Email
    subject: str = Field(min_length=1, max_length=200)
    body: str = Field(min_length=1, max_length=10_000)


class SentEmail(BaseModel):
    email_id: str
    order_id: str
    to: str
    subject: str
    body: str
    sent_at: str


def receipt_for(event: OrderConfirmed) -> SendEmail:
    """The receipt for a confirmed order: built from the event alone, so the same event always
    gives the same mail (a repeat is a duplicate, not a conflict)."""
    lines = "\n".join(
        f"  {line.quantity} x {line.sku} at {_money(line.unit_price_cents, event.currency)}"
        for line in event.lines
    )
    return SendEmail(
        email_id=event.event_id,
        order_id=event.order_id,
        to=event.email,
        subject=f"Your order {event.order_id} is confirmed",
        body=(
            f"Thank you for your order {event.order_id}.\n\n{lines}\n\n"
            f"Total: {_money(event.total_cents, event.currency)}\n"
        ),
    )


def _money(cents: int, currency: str) -> str:
    return f"{cents // 100}.{cents % 100:02d} {currency}"
