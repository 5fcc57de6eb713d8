"""Payments: cards turned into tokens, charges against a token, and their refunds."""

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from models.common import CardNumber, Cents, Currency, IdempotencyKey, OrderId, PaymentToken

# Where a shop's front end sends a card number (with the publishable key) for a token.
PAYMENT_METHODS_PATH = "/payment-methods"

# Test cards (they all pass the Luhn check); each keeps its behaviour through its tokens.
CARD_OK = "4242424242424242"
# Always declined: a business refusal, never retried.
CARD_DECLINED = "4000000000000002"
# Answers 503 for the first PAYMENTS_FLAKY_FAILURES attempts of each charge (default 2),
# then succeeds: a transient fault that Temporal's retries ride out.
CARD_FLAKY = "4000000000000119"


class CardBehaviour(StrEnum):
    """What a charge against a card does, kept with its token instead of the number."""

    OK = "ok"
    DECLINED = "declined"
    FLAKY = "flaky"


class NewPaymentMethod(BaseModel):
    """Body of POST /payment-methods, sent by a shop's front end with the publishable key."""

    # An unknown field is refused; an error never quotes the number (not even in str()).
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    card_number: CardNumber


class PaymentMethod(BaseModel):
    """A tokenized card: all that is kept of it. The token is what a checkout carries."""

    token: str
    brand: str
    last4: str


class ChargeRequest(BaseModel):
    # A card number sent along is refused, never taken; str() of an error hides the input.
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    charge_id: IdempotencyKey
    order_id: OrderId
    amount_cents: Cents
    currency: Currency
    payment_token: PaymentToken


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
    # When the payments service wrote it (UTC, ISO 8601); None from a service that predates it.
    created_at: str | None = None


class RefundRequest(BaseModel):
    reason: str = Field(min_length=1, max_length=500)


class Refund(BaseModel):
    """What the refund compensation needs: which charge, and why."""

    charge_id: IdempotencyKey
    reason: str = Field(min_length=1, max_length=500)
