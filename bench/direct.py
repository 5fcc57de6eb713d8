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

import httpx
from pydantic import BaseModel

from models.checkout import CheckoutRequest
from models.email import receipt_for
from models.events import OrderConfirmed
from models.inventory import ReserveStock, StockLine
from models.orders import CreateOrder, OrderLine
from models.payments import ChargeRequest
from models.warehouse import shipment_for

DIRECT_SERVICES = ("orders", "inventory", "payments", "email", "warehouse")


class DirectCallFailed(RuntimeError):
    pass


@dataclass(frozen=True)
class DirectClients:
    """One pooled client per service, shared by every checkout of the chain."""

    orders: httpx.AsyncClient
    inventory: httpx.AsyncClient
    payments: httpx.AsyncClient
    email: httpx.AsyncClient
    warehouse: httpx.AsyncClient


@asynccontextmanager
async def direct_clients(
    urls: Mapping[str, str],
    headers: Mapping[str, str],
    max_connections: int = 100,
    timeout_seconds: float = 30.0,
) -> AsyncIterator[DirectClients]:
    """`headers`: the services' bearer token (services.auth), as every caller sends it."""
    limits = httpx.Limits(max_connections=max_connections)
    timeout = httpx.Timeout(timeout_seconds)

    def client(name: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=urls[name], headers=dict(headers), limits=limits, timeout=timeout
        )

    async with (
        client("orders") as orders,
        client("inventory") as inventory,
        client("payments") as payments,
        client("email") as email,
        client("warehouse") as warehouse,
    ):
        yield DirectClients(orders, inventory, payments, email, warehouse)


async def _post(http: httpx.AsyncClient, path: str, body: BaseModel | None = None) -> None:
    response = await http.post(path, json=None if body is None else body.model_dump(mode="json"))
    if response.status_code >= 400:
        raise DirectCallFailed(f"POST {path}: {response.status_code} {response.text[:200]}")


async def direct_checkout(clients: DirectClients, request: CheckoutRequest) -> None:
    """Place the checkout with one call after the other; returns when all of them answered."""
    key = f"direct-{request.order_id}"
    await _post(
        clients.orders,
        "/orders",
        CreateOrder(
            order_id=request.order_id,
            customer_id=request.customer_id,
            currency=request.currency,
            lines=[OrderLine(**item.model_dump()) for item in request.items],
        ),
    )
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
            amount_cents=request.total_cents,
            currency=request.currency,
            card_number=request.card_number,
        ),
    )
    await _post(clients.orders, f"/orders/{request.order_id}/confirm")
    await _post(clients.inventory, f"/reservations/{key}:reserve/commit")
    # The same receipt and shipment the saga's jobs send, built from the same event.
    confirmed = OrderConfirmed.from_checkout(
        request, workflow_id=key, occurred_at=datetime.now(UTC)
    )
    await _post(clients.email, "/emails", receipt_for(confirmed))
    await _post(clients.warehouse, "/shipments", shipment_for(confirmed))
