"""Payments: charges against a card and their refunds."""

from enum import StrEnum

from pydantic import BaseModel, Field

from models.common import CardNumber, Cents, Currency, IdempotencyKey, OrderId

# Test cards (they all pass the Luhn check).
CARD_OK = "4242424242424242"
# Always declined: a business refusal, never retried.
CARD_DECLINED = "4000000000000002"
# Answers 503 for the first PAYMENTS_FLAKY_FAILURES attempts of each charge (default 2),
# then succeeds: a transient fault that Temporal's retries ride out.
CARD_FLAKY = "4000000000000119"


class ChargeRequest(BaseModel):
    charge_id: IdempotencyKey
    order_id: OrderId
    amount_cents: Cents
    currency: Currency
    card_number: CardNumber


class ChargeStatus(StrEnum):
    SUCCEEDED = "SUCCEEDED"
    REFUNDED = "REFUNDED"
    DECLINED = "DECLINED"
    # Refunded before the charge itself arrived: a late charge with this id is refused.
    VOIDED = "VOIDED"


class Charge(BaseModel):
    charge_id: str
    order_id: str | None
    amount_cents: int
    currency: str
    card_last4: str
    status: ChargeStatus
    refund_reason: str | None = None


class RefundRequest(BaseModel):
    reason: str = Field(min_length=1, max_length=500)


class Refund(BaseModel):
    """What the refund compensation needs: which charge, and why."""

    charge_id: IdempotencyKey
    reason: str = Field(min_length=1, max_length=500)
