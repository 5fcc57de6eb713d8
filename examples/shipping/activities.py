"""The order's desks: stock, two carriers (A picks up, B delivers) and payments.

They keep their records in the worker's memory: enough to show the engine, not a place to
keep real orders. Like every saga's activities they are idempotent (a record's id is the
order's and the kind's), and an undo that arrives before its booking leaves a tombstone so
that the late booking is refused: a step that timed out or was cancelled may still land after
its undo ran. `ledger` lists every change in the order it happened, across both sagas.
"""

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable

from temporalio import activity
from temporalio.exceptions import ApplicationError

from examples.shipping.models import CARRIERS, Booking, OrderRequest, Shipment, Simulation

UNDONE = "undone"


class ShopActivities:
    def __init__(self) -> None:
        self._records: dict[str, str] = {}  # record id -> "made", or UNDONE
        self._undo_attempts: Counter[str] = Counter()
        # (order id, what changed), oldest first.
        self.ledger: list[tuple[str, str]] = []

    def done(self, order_id: str) -> list[str]:
        """What changed for this order, oldest first (`book_pickup`, `cancel_pickup`, ...)."""
        return [what for order, what in self.ledger if order == order_id]

    @activity.defn(name="reserve_stock")
    async def reserve_stock(self, order: OrderRequest) -> Booking:
        return await self._make(order.order_id, "stock", "reserve_stock", order.simulate)

    @activity.defn(name="release_stock")
    async def release_stock(self, order: OrderRequest) -> None:
        self._undo(order.order_id, "stock", "release_stock", order.simulate)

    @activity.defn(name="book_pickup")
    async def book_pickup(self, shipment: Shipment) -> Booking:
        return await self._make(shipment.order_id, "pickup", "book_pickup", shipment.simulate)

    @activity.defn(name="cancel_pickup")
    async def cancel_pickup(self, shipment: Shipment) -> None:
        self._undo(shipment.order_id, "pickup", "cancel_pickup", shipment.simulate)

    @activity.defn(name="book_delivery")
    async def book_delivery(self, shipment: Shipment) -> Booking:
        return await self._make(shipment.order_id, "delivery", "book_delivery", shipment.simulate)

    @activity.defn(name="cancel_delivery")
    async def cancel_delivery(self, shipment: Shipment) -> None:
        self._undo(shipment.order_id, "delivery", "cancel_delivery", shipment.simulate)

    @activity.defn(name="charge")
    async def charge(self, order: OrderRequest) -> Booking:
        await _maybe_slow(order.simulate, "charge")
        if order.simulate.charge_declined:
            raise ApplicationError(
                "the charge was declined", type="charge_declined", non_retryable=True
            )
        record_id = f"{order.order_id}:charge"
        if record_id not in self._records:  # a retried charge charges once
            self._records[record_id] = "made"
            self.ledger.append((order.order_id, "charge"))
        return Booking(booking_id=record_id, kind="charge")

    def all(self) -> list[Callable[..., Awaitable[object]]]:
        return [
            self.reserve_stock,
            self.release_stock,
            self.book_pickup,
            self.cancel_pickup,
            self.book_delivery,
            self.cancel_delivery,
            self.charge,
        ]

    async def _make(self, order_id: str, kind: str, step: str, simulate: Simulation) -> Booking:
        await _maybe_slow(simulate, step)
        record_id = f"{order_id}:{kind}"
        if self._records.get(record_id) == UNDONE:
            raise ApplicationError(
                f"{record_id} was undone before it was made", type="undone", non_retryable=True
            )
        if simulate.refusing_carrier and CARRIERS[simulate.refusing_carrier] == step:
            raise ApplicationError(
                f"carrier {simulate.refusing_carrier.upper()} refuses the {kind}",
                type="carrier_refused",
                non_retryable=True,
            )
        if record_id not in self._records:
            self._records[record_id] = "made"
            self.ledger.append((order_id, step))
        return Booking(booking_id=record_id, kind=kind)

    def _undo(self, order_id: str, kind: str, undo: str, simulate: Simulation) -> None:
        record_id = f"{order_id}:{kind}"
        self._undo_attempts[record_id] += 1
        if self._undo_attempts[record_id] <= simulate.cancel_failures.get(undo, 0):
            raise ApplicationError(f"the {kind} desk does not answer", type="desk_down")
        if self._records.get(record_id) != UNDONE:  # a tombstone when it was never made
            self._records[record_id] = UNDONE
            self.ledger.append((order_id, undo))


async def _maybe_slow(simulate: Simulation, step: str) -> None:
    if simulate.slow_step == step:
        await asyncio.sleep(simulate.slow_seconds)
