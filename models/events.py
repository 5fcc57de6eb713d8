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
from models.common import Currency, CustomerId, Email, IdempotencyKey, OrderId
from models.orders import OrderLine

ORDER_CONFIRMED: Final = "OrderConfirmed"
ORDER_REJECTED: Final = "OrderRejected"
# The signals that carry each event to a long-lived consumer workflow.
ORDER_CONFIRMED_SIGNAL: Final = "order_confirmed"
ORDER_REJECTED_SIGNAL: Final = "order_rejected"
MAX_REASON_CHARS = 2000
# What follows an answer (committing the stock, every consumer of these events) waits behind
# what customers are waiting for: under a burst the answers go first (README "Performance").
# Priority keys run 1 (first) to 5; the default is 3.
AFTER_ANSWER = Priority(priority_key=5)


def after_answer_queue(task_queue: str) -> str:
    """The task queue of what follows an answer on `task_queue` (committing the stock): its
    worker hands out slots while the CPU has room (worker/after_answer.py)."""
    return f"{task_queue}-after-answer"


def event_id(workflow_id: str, event_type: str) -> str:
    """`checkout-o1:OrderConfirmed`: the same decision always has the same id."""
    return f"{workflow_id}:{event_type}"


class OrderEventBase(BaseModel):
    event_id: IdempotencyKey
    order_id: OrderId
    customer_id: CustomerId
    email: Email
    lines: list[OrderLine] = Field(min_length=1, max_length=50)
    total_cents: int = Field(ge=0)
    currency: Currency
    # When the workflow made the decision (workflow.now(): deterministic). Informational:
    # consumers key on event_id and never send it on to a service.
    occurred_at: datetime


class OrderConfirmed(OrderEventBase):
    """The order exists: paid, stock committed. Nothing after this undoes it."""

    type: Literal["OrderConfirmed"] = ORDER_CONFIRMED

    @classmethod
    def from_checkout(
        cls, request: CheckoutRequest, *, workflow_id: str, occurred_at: datetime
    ) -> "OrderConfirmed":
        return cls(
            event_id=event_id(workflow_id, ORDER_CONFIRMED),
            order_id=request.order_id,
            customer_id=request.customer_id,
            email=request.email,
            lines=_lines(request),
            total_cents=request.total_cents,
            currency=request.currency,
            occurred_at=occurred_at,
        )


class OrderRejected(OrderEventBase):
    """The order was refused and everything done for it undone (compensated)."""

    type: Literal["OrderRejected"] = ORDER_REJECTED
    failed_step: str | None = None
    reason_code: str | None = None
    reason: str = Field(min_length=1, max_length=MAX_REASON_CHARS)

    @classmethod
    def from_checkout(
        cls,
        request: CheckoutRequest,
        *,
        workflow_id: str,
        occurred_at: datetime,
        reason: str,
        reason_code: str | None = None,
        failed_step: str | None = None,
    ) -> "OrderRejected":
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
            lines=_lines(request),
            total_cents=request.total_cents,
            currency=request.currency,
        )


# Either event, told apart by its `type` (for stores such as the dead letters).
OrderEvent = Annotated[OrderConfirmed | OrderRejected, Field(discriminator="type")]


def _lines(request: CheckoutRequest) -> list[OrderLine]:
    return [OrderLine(**item.model_dump()) for item in request.items]
