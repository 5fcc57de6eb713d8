"""Orders: the record that says whether a customer's order exists."""

from enum import StrEnum

from pydantic import BaseModel, Field

from models.common import Cents, Currency, CustomerId, OrderId, Quantity, Sku


class OrderStatus(StrEnum):
    PENDING = "PENDING"
    CONFIRMED = "CONFIRMED"
    CANCELLED = "CANCELLED"


class OrderLine(BaseModel):
    sku: Sku
    quantity: Quantity
    unit_price_cents: Cents


class CreateOrder(BaseModel):
    order_id: OrderId
    customer_id: CustomerId
    currency: Currency
    lines: list[OrderLine] = Field(min_length=1, max_length=50)


class CancelOrder(BaseModel):
    reason: str = Field(min_length=1, max_length=500)


class Order(BaseModel):
    order_id: OrderId
    customer_id: str
    currency: str
    lines: list[OrderLine]
    total_cents: int
    status: OrderStatus
    cancel_reason: str | None = None


class OrderCancellation(BaseModel):
    """What the cancel-order compensation needs: which order, and why."""

    order_id: OrderId
    reason: str = Field(min_length=1, max_length=500)
