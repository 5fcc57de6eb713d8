"""Warehouse: shipments, one per confirmed order."""

from enum import StrEnum

from pydantic import BaseModel, Field

from models.common import CustomerId, IdempotencyKey, OrderId
from models.events import OrderConfirmed
from models.inventory import StockLine


class CreateShipment(BaseModel):
    # One shipment per order; the event id says which announcement asked for it.
    order_id: OrderId
    event_id: IdempotencyKey
    customer_id: CustomerId
    lines: list[StockLine] = Field(min_length=1, max_length=50)


class ShipmentStatus(StrEnum):
    REQUESTED = "REQUESTED"


class Shipment(BaseModel):
    order_id: str
    event_id: str
    customer_id: str
    lines: list[StockLine]
    status: ShipmentStatus
    created_at: str


def shipment_for(event: OrderConfirmed) -> CreateShipment:
    return CreateShipment(
        order_id=event.order_id,
        event_id=event.event_id,
        customer_id=event.customer_id,
        lines=[StockLine(sku=line.sku, quantity=line.quantity) for line in event.lines],
    )
