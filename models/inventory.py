"""Inventory: stock per SKU and the reservations that hold it for an order."""

from enum import StrEnum

from pydantic import BaseModel, Field

from models.common import IdempotencyKey, OrderId, Quantity, Sku


class StockLine(BaseModel):
    sku: Sku
    quantity: Quantity


class ReserveStock(BaseModel):
    reservation_id: IdempotencyKey
    order_id: OrderId
    lines: list[StockLine] = Field(min_length=1, max_length=50)


class ReservationStatus(StrEnum):
    RESERVED = "RESERVED"
    COMMITTED = "COMMITTED"
    RELEASED = "RELEASED"
    # Refused for lack of stock; kept so that a repeat of the request gets the same answer.
    REJECTED = "REJECTED"


class Reservation(BaseModel):
    reservation_id: str
    order_id: str | None
    lines: list[StockLine]
    status: ReservationStatus
    # When the inventory service wrote it (UTC, ISO 8601); None from a service that predates it.
    created_at: str | None = None


class SetStock(BaseModel):
    """Admin body of PUT /stock/{sku}: the bound keeps SQLite's integers from overflowing."""

    name: str = Field(min_length=1, max_length=200)
    available: int = Field(ge=0, le=1_000_000_000)


class StockLevel(BaseModel):
    """available + reserved + committed is constant for a SKU: stock is conserved."""

    sku: str
    name: str
    available: int
    reserved: int
    committed: int


class OutOfStock(BaseModel):
    sku: str
    requested: int
    available: int
