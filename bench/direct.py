"""Direct calls: the checkout as one chain of synchronous HTTP calls, no Temporal.

The "before" that the saga replaces: the caller calls each service in turn and answers the
customer only after the last one (order -> inventory -> payments -> confirm -> commit ->
email -> warehouse). No retries, no compensation, nothing survives a crash of the caller: a
failed call fails the checkout and leaves what was done behind. The bench only places
checkouts that succeed, so it measures the happy path's cost.
"""

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp
from pydantic import BaseModel

from activities.http import JSON, ServiceClient
from models.checkout import CheckoutRequest
from models.email import receipt_for
from models.events import OrderConfirmed
from models.inventory import ReserveStock, StockLine
from models.orders import CreateOrder, Order, OrderItem
from models.payments import ChargeRequest
from models.warehouse import shipment_for

DIRECT_SERVICES = ("orders", "inventory", "payments", "email", "warehouse")


class DirectCallFailed(RuntimeError):
    pass


@dataclass(frozen=True)
class DirectClients:
    """One pooled client per service (the HTTP client the activities use), shared by every
    checkout of the chain."""

    orders: ServiceClient
    inventory: ServiceClient
    payments: ServiceClient
    email: ServiceClient
    warehouse: ServiceClient


@asynccontextmanager
async def direct_clients(
    urls: Mapping[str, str],
    headers: Mapping[str, str],
    max_connections: int = 100,
    timeout_seconds: float = 30.0,
) -> AsyncIterator[DirectClients]:
    """`headers`: the services' bearer token (services.auth), as every caller sends it."""
    async with aiohttp.ClientSession(
        headers=dict(headers),
        timeout=aiohttp.ClientTimeout(total=timeout_seconds),
        connector=aiohttp.TCPConnector(limit=max_connections),
    ) as session:
        yield DirectClients(
            *(ServiceClient(urls[name].rstrip("/"), session) for name in DIRECT_SERVICES)
        )


async def _post(http: ServiceClient, path: str, body: BaseModel | None = None) -> bytes:
    data = None if body is None else body.model_dump_json().encode()
    async with http.session.post(http.url + path, data=data, headers=JSON) as response:
        if response.status >= 400:
            text = (await response.text())[:200]
            raise DirectCallFailed(f"POST {path}: {response.status} {text}")
        return await response.read()


async def direct_checkout(clients: DirectClients, request: CheckoutRequest) -> None:
    """Place the checkout with one call after the other; returns when all of them answered."""
    key = f"direct-{request.order_id}"
    created = await _post(
        clients.orders,
        "/orders",
        CreateOrder(
            order_id=request.order_id,
            customer_id=request.customer_id,
            currency=request.currency,
            lines=[OrderItem(sku=item.sku, quantity=item.quantity) for item in request.items],
            expected_total_cents=request.expected_total_cents,
        ),
    )
    # Priced by the orders service, as for the saga: the charge is the order's total.
    order = Order.model_validate_json(created)
    lines = [StockLine(sku=item.sku, quantity=item.quantity) for item in request.items]
    await _post(
        clients.inventory,
        "/reservations",
        ReserveStock(reservation_id=f"{key}:reserve", order_id=request.order_id, lines=lines),
    )
    await _post(
        clients.payments,
        "/charges",
        ChargeRequest(
            charge_id=f"{key}:charge",
            order_id=request.order_id,
            amount_cents=order.total_cents,
            currency=order.currency,
            payment_token=request.payment_token,
        ),
    )
    await _post(clients.orders, f"/orders/{request.order_id}/confirm")
    await _post(clients.inventory, f"/reservations/{key}:reserve/commit")
    # The same receipt and shipment the saga's jobs send, built from the same event.
    confirmed = OrderConfirmed.from_checkout(
        request, order, workflow_id=key, occurred_at=datetime.now(UTC)
    )
    await _post(clients.email, "/emails", receipt_for(confirmed))
    await _post(clients.warehouse, "/shipments", shipment_for(confirmed))
