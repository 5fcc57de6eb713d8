"""Events: what the checkout announces once its decision is made, for whoever reacts.

Past tense, immutable facts. The event id is deterministic (`{workflow_id}:{type}`), so an
announcement repeated (a retry, a replay, a reset) carries the same id and every consumer
can recognise it as a duplicate.
"""

from datetime import datetime
from typing import Annotated, Final, Literal

from pydantic import BaseModel, Field
from temporalio.common import Priority

from models.checkout import CheckoutRequest
from models.common import Cents, Currency, CustomerId, Email, IdempotencyKey, OrderId, Quantity, Sku
from models.orders import Order, OrderLine

ORDER_CONFIRMED: Final = "OrderConfirmed"
ORDER_REJECTED: Final = "OrderRejected"
# The signals that carry each event to a long-lived consumer workflow.
ORDER_CONFIRMED_SIGNAL: Final = "order_confirmed"
ORDER_REJECTED_SIGNAL: Final = "order_rejected"
MAX_REASON_CHARS = 2000
# What follows an answer (committing the stock, every consumer of these events) waits in the
# task queue's backlog behind what customers are waiting for. Priority keys run 1 (first) to
# 5; the default is 3.
AFTER_ANSWER = Priority(priority_key=5)


def event_id(workflow_id: str, event_type: str) -> str:
    """`checkout-o1:OrderConfirmed`: the same decision always has the same id."""
    return f"{workflow_id}:{event_type}"


class OrderEventBase(BaseModel):
    event_id: IdempotencyKey
    order_id: OrderId
    customer_id: CustomerId
    email: Email
    currency: Currency
    # When the workflow made the decision (workflow.now(): deterministic). Informational:
    # consumers key on event_id and never send it on to a service.
    occurred_at: datetime


class OrderConfirmed(OrderEventBase):
    """The order exists: paid, stock committed. Nothing after this undoes it."""

    type: Literal["OrderConfirmed"] = ORDER_CONFIRMED
    # As the orders service priced them; the total is what was charged.
    lines: list[OrderLine] = Field(min_length=1, max_length=50)
    total_cents: int = Field(ge=0)

    @classmethod
    def from_checkout(
        cls, request: CheckoutRequest, order: Order, *, workflow_id: str, occurred_at: datetime
    ) -> "OrderConfirmed":
        """`order`: as the create_order step returned it (the prices, the total)."""
        return cls(
            event_id=event_id(workflow_id, ORDER_CONFIRMED),
            order_id=request.order_id,
            customer_id=request.customer_id,
            email=request.email,
            lines=order.lines,
            total_cents=order.total_cents,
            currency=order.currency,
            occurred_at=occurred_at,
        )


class RejectedLine(BaseModel):
    """A line of a rejected order: its unit price when the orders service had priced it,
    None when the order was refused (or never answered) before it was priced."""

    sku: Sku
    quantity: Quantity
    unit_price_cents: Cents | None = None


class OrderRejected(OrderEventBase):
    """The order was refused and everything done for it undone (compensated)."""

    type: Literal["OrderRejected"] = ORDER_REJECTED
    lines: list[RejectedLine] = Field(min_length=1, max_length=50)
    # The priced order's total; 0 when it was never priced (nothing was at stake, nothing
    # was charged): an unknown SKU, an unsold currency, a changed price, the orders service
    # unreachable.
    total_cents: int = Field(ge=0)
    failed_step: str | None = None
    reason_code: str | None = None
    reason: str = Field(min_length=1, max_length=MAX_REASON_CHARS)

    @classmethod
    def from_checkout(
        cls,
        request: CheckoutRequest,
        order: Order | None,
        *,
        workflow_id: str,
        occurred_at: datetime,
        reason: str,
        reason_code: str | None = None,
        failed_step: str | None = None,
    ) -> "OrderRejected":
        """`order`: as the create_order step returned it; None if that step never did."""
        if order is not None:
            lines = [RejectedLine(**line.model_dump()) for line in order.lines]
            total = order.total_cents
        else:
            lines = [RejectedLine(sku=item.sku, quantity=item.quantity) for item in request.items]
            total = 0
        return cls(
            event_id=event_id(workflow_id, ORDER_REJECTED),
            occurred_at=occurred_at,
            # Bounded, and never empty: building the event must not fail the checkout.
            reason=reason[:MAX_REASON_CHARS] or "rejected",
            reason_code=reason_code,
            failed_step=failed_step,
            order_id=request.order_id,
            customer_id=request.customer_id,
            email=request.email,
            lines=lines,
            total_cents=total,
            currency=request.currency,
        )


# Either event, told apart by its `type` (for stores such as the dead letters).
OrderEvent = Annotated[OrderConfirmed | OrderRejected, Field(discriminator="type")]
