"""Checkout: what a customer asks for, and the answer they get."""

from enum import StrEnum
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator
from temporalio.common import SearchAttributeKey

from models.common import (
    Cents,
    Currency,
    CustomerId,
    Email,
    OrderId,
    PaymentToken,
    Quantity,
    Sku,
)
from models.common import luhn_ok as luhn_ok  # re-exported: callers check cards with it
from temporal_saga.models import SagaProgress, SagaResult
from temporal_saga.search import SEARCH_ATTRIBUTES as SAGA_SEARCH_ATTRIBUTES

# The checkout's own search attribute, beside the engine's SagaStatus and SagaStep; with them,
# every search attribute a checkout sets: register them (Keyword) on the cluster.
CUSTOMER_ID = SearchAttributeKey.for_keyword("CustomerId")
SEARCH_ATTRIBUTES = (*SAGA_SEARCH_ATTRIBUTES, CUSTOMER_ID)

# The most an order may cost: the orders service refuses a bigger total (order_too_large).
MAX_ORDER_TOTAL_CENTS = 100_000_000


class CheckoutOptions(BaseModel):
    """How patient the checkout is; defaults suit production."""

    model_config = ConfigDict(extra="forbid")

    # Not confirmed by then: compensate and answer REJECTED (deadline_exceeded).
    decision_deadline_seconds: int = Field(default=120, ge=1, le=86_400)
    # A compensation still failing after this many attempts waits for an operator.
    compensation_attempts_before_attention: int = Field(default=10, ge=1, le=1000)


class CartItem(BaseModel):
    """What and how many; the price is the shop's (the orders service prices the order)."""

    # A field the shop does not take (a unit price, say) is an error, not silently dropped.
    model_config = ConfigDict(extra="forbid")

    sku: Sku
    quantity: Quantity


class CheckoutDetails(BaseModel):
    """A checkout without its means of payment: who, what, how patient. The CLI checks it
    before it tokenizes the card (CheckoutRequest adds the token)."""

    # str() of an error hides the input: a card number where it does not belong stays out
    # of logs and out of a workflow task's failure, wherever the error goes.
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    order_id: OrderId
    customer_id: CustomerId
    email: Email = Field(max_length=254)
    # The form only (three upper-case letters); whether the shop sells in it is its own say.
    currency: Currency = "EUR"
    items: list[CartItem] = Field(min_length=1, max_length=50)
    # The total the customer was shown: if the shop's total differs, the checkout is refused
    # with price_changed before anything is written or charged. None: no check.
    expected_total_cents: Cents | None = None
    options: CheckoutOptions = CheckoutOptions()

    @model_validator(mode="after")
    def _cart(self) -> Self:
        skus = [item.sku for item in self.items]
        if len(set(skus)) != len(skus):
            raise ValueError("items: each SKU may appear once; add up the quantities instead")
        return self


class CheckoutRequest(CheckoutDetails):
    """Validated in full on construction, so a bad request never reaches a service. What is
    checked against the shop (SKUs it sells, currencies it sells in, today's prices) is
    checked by the orders service when the order is created, before anything else.

    It carries the card's token, never its number: the request is the workflow's input, kept
    in its history and shown by the Web UI. A card number in its place is refused."""

    payment_token: PaymentToken


class CheckoutStep(StrEnum):
    CREATE_ORDER = "create_order"
    RESERVE_STOCK = "reserve_stock"
    CHARGE_PAYMENT = "charge_payment"
    CONFIRM_ORDER = "confirm_order"


def checkout_workflow_id(order_id: str) -> str:
    """One workflow per order: starting the same order twice finds the first run."""
    return f"checkout-{order_id}"


def idempotency_key(workflow_id: str, step: CheckoutStep) -> str:
    """Stable across activity retries, worker restarts and workflow resets."""
    return f"{workflow_id}:{step.value}"


class CheckoutResult(SagaResult):
    """The customer's answer: the saga's, with the order it is about."""

    order_id: str
    total_cents: int
    currency: str
    failed_step: CheckoutStep | None = None


class CheckoutProgress(SagaProgress[CheckoutResult]):
    """The `status` query of a checkout: the saga's, with the order it is about."""

    order_id: str
