"""Checkout: what a customer asks for, and the answer they get."""

from enum import StrEnum
from typing import Self

from pydantic import BaseModel, Field, field_validator, model_validator

from models.common import Cents, Currency, CustomerId, Email, OrderId, Quantity, Sku
from models.saga import SagaProgress, SagaResult

MAX_ORDER_TOTAL_CENTS = 100_000_000


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


class CheckoutOptions(BaseModel):
    """How patient the checkout is; defaults suit production."""

    # Not confirmed by then: compensate and answer REJECTED (deadline_exceeded).
    decision_deadline_seconds: int = Field(default=120, ge=1, le=86_400)
    # A compensation still failing after this many attempts waits for an operator.
    compensation_attempts_before_attention: int = Field(default=10, ge=1, le=1000)


class CartItem(BaseModel):
    sku: Sku
    quantity: Quantity
    unit_price_cents: Cents


class CheckoutRequest(BaseModel):
    """Validated in full on construction, so a bad request never reaches a service."""

    order_id: OrderId
    customer_id: CustomerId
    email: Email = Field(max_length=254)
    card_number: str
    currency: Currency = "EUR"
    items: list[CartItem] = Field(min_length=1, max_length=50)
    options: CheckoutOptions = CheckoutOptions()

    @field_validator("card_number")
    @classmethod
    def _card_number(cls, value: str) -> str:
        digits = value.replace(" ", "").replace("-", "")
        if not digits.isdigit() or not 12 <= len(digits) <= 19:
            raise ValueError("must be 12 to 19 digits")
        if not luhn_ok(digits):
            raise ValueError("fails the Luhn check (mistyped card number?)")
        return digits

    @model_validator(mode="after")
    def _cart(self) -> Self:
        skus = [item.sku for item in self.items]
        if len(set(skus)) != len(skus):
            raise ValueError("items: each SKU may appear once; add up the quantities instead")
        if self.total_cents > MAX_ORDER_TOTAL_CENTS:
            raise ValueError(f"items: order total exceeds {MAX_ORDER_TOTAL_CENTS} cents")
        return self

    @property
    def total_cents(self) -> int:
        return sum(item.quantity * item.unit_price_cents for item in self.items)


class CheckoutStep(StrEnum):
    CREATE_ORDER = "create_order"
    RESERVE_STOCK = "reserve_stock"
    CHARGE_PAYMENT = "charge_payment"
    CONFIRM_ORDER = "confirm_order"


class CheckoutResult(SagaResult):
    """The customer's answer: the saga's, with the order it is about."""

    order_id: str
    total_cents: int
    currency: str
    failed_step: CheckoutStep | None = None


class CheckoutProgress(SagaProgress[CheckoutResult]):
    """The `status` query of a checkout: the saga's, with the order it is about."""

    order_id: str
