"""The harness's one caller of the services, for the DBOS checkout and the direct chain: every
path and request body in this one place.

The same calls, bodies and outcome semantics as the Temporal activities (activities/*.py,
activities/http.py), without Temporal's error types:

- transport errors, timeouts, 408, 425, 429 and 5xx raise ServiceUnavailable: transient,
  the caller's retries ride them out;
- any other 4xx raises ServiceRefused with the service's error code (out_of_stock,
  card_declined, ...): a business refusal, never retried.

Both exceptions pickle as they are built (DBOS stores a step's error that way).
"""

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

import aiohttp
from pydantic import BaseModel, ValidationError

from activities.http import JSON, TRANSIENT_STATUS, ServiceClient
from models.analytics import RecordedEvent, record_for
from models.checkout import CheckoutRequest
from models.common import ServiceError
from models.email import SentEmail, receipt_for
from models.events import OrderConfirmed, OrderRejected
from models.inventory import Reservation, ReserveStock, StockLine
from models.loyalty import LedgerEntry, points_entry_for
from models.orders import CancelOrder, CreateOrder, Order, OrderItem
from models.payments import Charge, ChargeRequest, RefundRequest
from models.warehouse import Shipment, shipment_for

M = TypeVar("M", bound=BaseModel)

SHOP_SERVICES = ("orders", "inventory", "payments", "email", "warehouse", "loyalty", "analytics")
# As the saga's steps (engine/temporal_saga/steps.py STEP_TIMEOUT): one call, at most this long.
CALL_TIMEOUT_SECONDS = 10.0


class ServiceUnavailable(Exception):
    """Transient: the call may succeed if made again."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ServiceRefused(Exception):
    """A business refusal (a 4xx other than the transient ones), with the service's code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


async def call(
    http: ServiceClient,
    method: str,
    path: str,
    response_model: type[M],
    body: BaseModel | None = None,
) -> M:
    data = None if body is None else body.model_dump_json().encode()
    try:
        async with http.session.request(method, http.url + path, data=data, headers=JSON) as r:
            status = r.status
            content = await r.read()
    except (aiohttp.ClientError, TimeoutError) as err:
        raise ServiceUnavailable(f"{method} {path}: {type(err).__name__} {err}".strip()) from err
    if status >= 500 or status in TRANSIENT_STATUS:
        raise ServiceUnavailable(f"{method} {path} answered {status}")
    if status >= 400:
        try:
            error = ServiceError.model_validate_json(content)
        except ValidationError:
            error = ServiceError(code=f"http_{status}", message=content.decode(errors="replace"))
        raise ServiceRefused(error.code, error.message[:500])
    return response_model.model_validate_json(content)


@dataclass(frozen=True)
class ShopCalls:
    """One pooled client per service; a method per call the checkout and its fan-out make."""

    orders: ServiceClient
    inventory: ServiceClient
    payments: ServiceClient
    email: ServiceClient
    warehouse: ServiceClient
    loyalty: ServiceClient
    analytics: ServiceClient

    # -- the checkout's steps and their compensations -----------------------------------------

    async def create_order(self, request: CheckoutRequest) -> Order:
        body = CreateOrder(
            order_id=request.order_id,
            customer_id=request.customer_id,
            currency=request.currency,
            lines=[OrderItem(sku=item.sku, quantity=item.quantity) for item in request.items],
            expected_total_cents=request.expected_total_cents,
        )
        return await call(self.orders, "POST", "/orders", Order, body)

    async def cancel_order(self, order_id: str, reason: str) -> Order:
        path = f"/orders/{order_id}/cancel"
        return await call(self.orders, "POST", path, Order, CancelOrder(reason=reason))

    async def reserve_stock(self, request: CheckoutRequest, reservation_id: str) -> Reservation:
        body = ReserveStock(
            reservation_id=reservation_id,
            order_id=request.order_id,
            lines=[StockLine(sku=item.sku, quantity=item.quantity) for item in request.items],
        )
        return await call(self.inventory, "POST", "/reservations", Reservation, body)

    async def release_stock(self, reservation_id: str) -> Reservation:
        path = f"/reservations/{reservation_id}/release"
        return await call(self.inventory, "POST", path, Reservation)

    async def commit_stock(self, reservation_id: str) -> Reservation:
        path = f"/reservations/{reservation_id}/commit"
        return await call(self.inventory, "POST", path, Reservation)

    async def charge_payment(
        self, request: CheckoutRequest, order: Order, charge_id: str
    ) -> Charge:
        """`order`: as create_order priced it; its total is what is charged."""
        body = ChargeRequest(
            charge_id=charge_id,
            order_id=request.order_id,
            amount_cents=order.total_cents,
            currency=order.currency,
            payment_token=request.payment_token,
        )
        return await call(self.payments, "POST", "/charges", Charge, body)

    async def refund_payment(self, charge_id: str, reason: str) -> Charge:
        path = f"/charges/{charge_id}/refund"
        return await call(self.payments, "POST", path, Charge, RefundRequest(reason=reason))

    async def confirm_order(self, order_id: str) -> Order:
        return await call(self.orders, "POST", f"/orders/{order_id}/confirm", Order)

    # -- the fan-out's consumers: each request is built from the event alone ------------------

    async def send_receipt(self, event: OrderConfirmed) -> SentEmail:
        return await call(self.email, "POST", "/emails", SentEmail, receipt_for(event))

    async def create_shipment(self, event: OrderConfirmed) -> Shipment:
        return await call(self.warehouse, "POST", "/shipments", Shipment, shipment_for(event))

    async def add_loyalty_points(self, event: OrderConfirmed) -> LedgerEntry:
        return await call(self.loyalty, "POST", "/ledger", LedgerEntry, points_entry_for(event))

    async def record_order_event(self, event: OrderConfirmed | OrderRejected) -> RecordedEvent:
        return await call(self.analytics, "POST", "/events", RecordedEvent, record_for(event))


@asynccontextmanager
async def shop_calls(
    urls: Mapping[str, str],
    headers: Mapping[str, str],
    max_connections: int = 100,
) -> AsyncIterator[ShopCalls]:
    """`urls`: at least SHOP_SERVICES'; `headers`: the services' bearer token (services.auth)."""
    async with aiohttp.ClientSession(
        headers=dict(headers),
        timeout=aiohttp.ClientTimeout(total=CALL_TIMEOUT_SECONDS),
        connector=aiohttp.TCPConnector(limit=max_connections),
    ) as session:
        yield ShopCalls(*(ServiceClient(urls[name].rstrip("/"), session) for name in SHOP_SERVICES))
