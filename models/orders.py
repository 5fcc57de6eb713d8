"""Orders: the record that says whether a customer's order exists."""

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from models.common import Cents, Currency, CustomerId, OrderId, Quantity, Sku


class OrderStatus(StrEnum):
    PENDING = "PENDING"
    CONFIRMED = "CONFIRMED"
    CANCELLED = "CANCELLED"


class OrderLine(BaseModel):
    """A line of an order as the orders service priced it."""

    sku: Sku
    quantity: Quantity
    unit_price_cents: Cents


class OrderItem(BaseModel):
    """A line as asked for: what and how many. The orders service prices it."""

    # A price sent along is refused, not dropped: the shop's catalogue sets prices.
    model_config = ConfigDict(extra="forbid")

    sku: Sku
    quantity: Quantity


class CreateOrder(BaseModel):
    model_config = ConfigDict(extra="forbid")

    order_id: OrderId
    customer_id: CustomerId
    # Checked for its form here; the orders service refuses one the shop does not sell in.
    currency: Currency
    lines: list[OrderItem] = Field(min_length=1, max_length=50)
    # The total the customer saw: if the shop's total differs, the create is refused
    # (409 price_changed) and nothing is written. None: no check.
    expected_total_cents: Cents | None = None


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
    # When the orders service wrote it (UTC, ISO 8601); None from a service that predates it.
    created_at: str | None = None


class OrderCancellation(BaseModel):
    """What the cancel-order compensation needs: which order, and why."""

    order_id: OrderId
    reason: str = Field(min_length=1, max_length=500)


class SetPrices(BaseModel):
    """Admin body of PUT /prices/{sku}: the SKU's unit price in each currency the shop sells
    in, all of them (a SKU priced in some only could not be ordered in the others)."""

    model_config = ConfigDict(extra="forbid")

    prices: dict[Currency, Cents] = Field(min_length=1, max_length=20)


class SkuPrices(BaseModel):
    """A SKU's unit prices, per currency."""

    sku: str
    prices: dict[str, int]
