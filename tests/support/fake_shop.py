"""Stand-ins for the checkout's activities, same names, scripted per order: for tests on the
time-skipping server, where the point is the workflow's behaviour, not the services'."""

import asyncio
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.worker import Interceptor, Worker

from models.checkout import CartItem, CheckoutOptions, CheckoutRequest
from models.deadletters import Delivery, NewDeadLetter
from models.email import SendEmail, SentEmail
from models.inventory import Reservation, ReservationStatus, ReserveStock
from models.orders import CreateOrder, Order, OrderCancellation, OrderLine, OrderStatus
from models.payments import Charge, ChargeRequest, ChargeStatus, Refund
from models.warehouse import CreateShipment, Shipment, ShipmentStatus
from worker.runner import WORKFLOWS

# order id -> {activity name: behaviour}. Behaviours: "transient" (always 503),
# "decline"/"out_of_stock" (business refusal), "fail" (compensation fails until HEALED),
# "wait" (blocks, heartbeating, until cancelled or RELEASED).
SCRIPT: dict[str, dict[str, str]] = defaultdict(dict)
JOURNAL: dict[str, list[str]] = defaultdict(list)
HEALED: set[str] = set()
# order id -> the reasons the order's cancellation and refund were given, in order.
UNDO_REASONS: dict[str, list[str]] = defaultdict(list)
RELEASED: set[str] = set()
# The scripted shop's price of every SKU, as the orders service would price it.
UNIT_PRICE_CENTS = 100
# The scripted shop takes any token of the right form; this one stands for a card ending 4242.
PAYMENT_TOKEN = "pm_scriptedshop4242"


async def _act(order_id: str, name: str) -> None:
    JOURNAL[order_id].append(name)
    behaviour = SCRIPT[order_id].get(name)
    if behaviour == "transient":
        raise ApplicationError(f"{name}: 503", type="service_unavailable")
    if behaviour == "decline":
        raise ApplicationError("the card was declined", type="card_declined", non_retryable=True)
    if behaviour == "out_of_stock":
        raise ApplicationError(
            "SKU-1: requested 1, available 0", type="out_of_stock", non_retryable=True
        )
    if behaviour == "fail" and f"{order_id}:{name}" not in HEALED:
        raise ApplicationError(f"{name}: 503", type="service_unavailable")
    if behaviour == "wait":
        for _ in range(600):  # bounded: 60 s at most
            if f"{order_id}:{name}" in RELEASED:
                break
            activity.heartbeat()
            await asyncio.sleep(0.1)
    JOURNAL[order_id].append(f"{name}:done")


class FakeShop:
    @activity.defn(name="create_order")
    async def create_order(self, order: CreateOrder) -> Order:
        await _act(order.order_id, "create_order")
        return Order(
            order_id=order.order_id,
            customer_id=order.customer_id,
            currency=order.currency,
            lines=[
                OrderLine(sku=item.sku, quantity=item.quantity, unit_price_cents=UNIT_PRICE_CENTS)
                for item in order.lines
            ],
            total_cents=sum(item.quantity * UNIT_PRICE_CENTS for item in order.lines),
            status=OrderStatus.PENDING,
        )

    @activity.defn(name="confirm_order")
    async def confirm_order(self, order_id: str) -> Order:
        await _act(order_id, "confirm_order")
        return Order(
            order_id=order_id,
            customer_id="c",
            currency="EUR",
            lines=[],
            total_cents=0,
            status=OrderStatus.CONFIRMED,
        )

    @activity.defn(name="cancel_order")
    async def cancel_order(self, cancellation: OrderCancellation) -> Order:
        await _act(cancellation.order_id, "cancel_order")
        UNDO_REASONS[cancellation.order_id].append(cancellation.reason)
        return Order(
            order_id=cancellation.order_id,
            customer_id="c",
            currency="EUR",
            lines=[],
            total_cents=0,
            status=OrderStatus.CANCELLED,
            cancel_reason=cancellation.reason,
        )

    @activity.defn(name="reserve_stock")
    async def reserve_stock(self, reservation: ReserveStock) -> Reservation:
        await _act(reservation.order_id, "reserve_stock")
        return Reservation(
            reservation_id=reservation.reservation_id,
            order_id=reservation.order_id,
            lines=reservation.lines,
            status=ReservationStatus.RESERVED,
        )

    @activity.defn(name="release_stock")
    async def release_stock(self, reservation_id: str) -> Reservation:
        await _act(_order_of(reservation_id), "release_stock")
        return Reservation(
            reservation_id=reservation_id,
            order_id=None,
            lines=[],
            status=ReservationStatus.RELEASED,
        )

    @activity.defn(name="commit_stock")
    async def commit_stock(self, reservation_id: str) -> Reservation:
        await _act(_order_of(reservation_id), "commit_stock")
        return Reservation(
            reservation_id=reservation_id,
            order_id=None,
            lines=[],
            status=ReservationStatus.COMMITTED,
        )

    @activity.defn(name="charge_payment")
    async def charge_payment(self, charge: ChargeRequest) -> Charge:
        await _act(charge.order_id, "charge_payment")
        return Charge(
            charge_id=charge.charge_id,
            order_id=charge.order_id,
            amount_cents=charge.amount_cents,
            currency=charge.currency,
            card_last4="4242",
            status=ChargeStatus.SUCCEEDED,
        )

    @activity.defn(name="refund_payment")
    async def refund_payment(self, refund: Refund) -> Charge:
        await _act(_order_of(refund.charge_id), "refund_payment")
        UNDO_REASONS[_order_of(refund.charge_id)].append(refund.reason)
        return Charge(
            charge_id=refund.charge_id,
            order_id=None,
            amount_cents=0,
            currency="EUR",
            card_last4="",
            status=ChargeStatus.REFUNDED,
        )

    @activity.defn(name="deliver_order_event")
    async def deliver_order_event(self, delivery: Delivery) -> str:
        """The fan-out's signals: delivered nowhere (the consumers are not under test)."""
        return ""

    @activity.defn(name="send_email")
    async def send_email(self, email: SendEmail) -> SentEmail:
        """The jobs' calls succeed at once: a job that retried in real time would hold the
        time-skipping server's clock for every other test."""
        return SentEmail(**email.model_dump(), sent_at="now")

    @activity.defn(name="create_shipment")
    async def create_shipment(self, shipment: CreateShipment) -> Shipment:
        return Shipment(**shipment.model_dump(), status=ShipmentStatus.REQUESTED, created_at="now")

    @activity.defn(name="record_dead_letter")
    async def record_dead_letter(self, letter: NewDeadLetter) -> None:
        """The dead letters of the jobs, whose services are not here: recorded nowhere."""

    def all(self) -> list[Callable[..., Any]]:
        return [
            self.deliver_order_event,
            self.record_dead_letter,
            self.send_email,
            self.create_shipment,
            self.create_order,
            self.confirm_order,
            self.cancel_order,
            self.reserve_stock,
            self.release_stock,
            self.commit_stock,
            self.charge_payment,
            self.refund_payment,
        ]


def scripted_request(
    prefix: str,
    script: dict[str, str] | None = None,
    customer: str = "customer-7",
    options: CheckoutOptions | None = None,
) -> CheckoutRequest:
    """A one-item checkout for a new order `{prefix}-...`, whose activities follow `script`."""
    order_id = f"{prefix}-{uuid.uuid4().hex[:10]}"
    SCRIPT[order_id] = script or {}
    return CheckoutRequest(
        order_id=order_id,
        customer_id=customer,
        email=f"{customer}@example.com",
        payment_token=PAYMENT_TOKEN,
        items=[CartItem(sku="SKU-1", quantity=1)],
        options=options or CheckoutOptions(),
    )


@asynccontextmanager
async def scripted_checkout_workers(
    client: Client,
    task_queue: str,
    extra_activities: Sequence[Callable[..., Any]] = (),
    interceptors: Sequence[Interceptor] = (),
    extra_workflows: Sequence[type] = (),
) -> AsyncIterator[None]:
    """Every workflow of the worker (the checkout, its jobs, the engine's sweep) with these
    activities on `task_queue`. The jobs find no services here: they leave dead letters
    nowhere."""
    shop = FakeShop()
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[*WORKFLOWS, *extra_workflows],
        activities=[*shop.all(), *extra_activities],
        interceptors=interceptors,
    ):
        yield


def _order_of(key: str) -> str:
    # Keys are "checkout-{order_id}:{step}".
    return key.split(":")[0].removeprefix("checkout-")
