"""The checkout's finder, for the reconciler: the checkouts whose business records are open.

Temporal runs no workflow code when a checkout is terminated, times out or is reset away
from, so such a checkout undoes nothing: its order stays PENDING, its reservation RESERVED,
its charge SUCCEEDED. The reconciler (an engine sweep on a Temporal Schedule) asks this
finder for the checkouts with records open since before some time, asks Temporal whether
each one's latest run still runs, and repairs those that can no longer finish.

Open, and opened before `FindOpenSagas.before`:
- an order PENDING;
- a reservation RESERVED, whatever its order's status (stock held is held);
- a charge SUCCEEDED whose order is PENDING.

The PENDING orders are listed, and the reservations and charges of those orders looked up
by order; the RESERVED reservations are listed too, for stock held for an order that is not
pending. Charges are not listed: a SUCCEEDED charge is what every confirmed checkout leaves
for good, so a listing of them would be mostly settled ones. No checkout that stopped
part-way is missed for it: creating the order is its first step and cancelling it its last
compensation, so its order is still PENDING. A SUCCEEDED charge of a CANCELLED order (a
refund an operator skipped) is not reported.
"""

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import TypeVar
from urllib.parse import urlencode

from pydantic import BaseModel, RootModel
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.http import ServiceClient, call_service
from models.checkout import checkout_workflow_id
from models.common import MAX_LIST_LIMIT, MAX_ORDER_IDS
from models.inventory import Reservation, ReservationStatus
from models.orders import Order, OrderStatus
from models.payments import Charge, ChargeStatus
from temporal_saga.models import FindOpenSagas, OpenSaga

# The finder's activity name, which the checkout's sweep names (workflows/checkout_sweep.py).
FIND_OPEN_CHECKOUTS = "find_open_checkouts"
RecordT = TypeVar("RecordT", bound=BaseModel)


class OrderList(RootModel[list[Order]]):
    pass


class ReservationList(RootModel[list[Reservation]]):
    pass


class ChargeList(RootModel[list[Charge]]):
    pass


class OpenRecord(BaseModel):
    """One open record, and the order whose checkout it belongs to."""

    order_id: str
    # As OpenSaga.records has it: "order:o1 PENDING".
    record: str
    opened_at: datetime


def _open_record(order_id: str, record: str, created_at: str | None) -> OpenRecord:
    if created_at is None:
        # Listed with created_before, which compares created_at: only a service that
        # predates created_at answers none (ignoring the filter).
        raise ApplicationError(
            f"{record} has no created_at: the service predates it",
            type="record_without_created_at",
            non_retryable=True,
        )
    return OpenRecord(
        order_id=order_id, record=record, opened_at=datetime.fromisoformat(created_at)
    )


def open_sagas(records: Sequence[OpenRecord], limit: int) -> list[OpenSaga]:
    """`records` by checkout (`checkout-{order_id}`, whatever the records' own ids): the
    `limit` longest open, each with its records in the order given."""
    by_workflow: defaultdict[str, list[OpenRecord]] = defaultdict(list)
    for record in records:
        by_workflow[checkout_workflow_id(record.order_id)].append(record)
    sagas = [
        OpenSaga(
            workflow_id=workflow_id,
            records=[record.record for record in found],
            opened_at=min(record.opened_at for record in found),
        )
        for workflow_id, found in by_workflow.items()
    ]
    sagas.sort(key=lambda saga: (saga.opened_at, saga.workflow_id))
    return sagas[:limit]


class CheckoutRecords:
    """The checkout's records in the orders, inventory and payments services."""

    def __init__(
        self, orders: ServiceClient, inventory: ServiceClient, payments: ServiceClient
    ) -> None:
        self._orders = orders
        self._inventory = inventory
        self._payments = payments

    @activity.defn(name=FIND_OPEN_CHECKOUTS)
    async def find_open_checkouts(self, request: FindOpenSagas) -> list[OpenSaga]:
        """The checkouts with records open since before `request.before`: one OpenSaga per
        workflow id, at most `request.limit`, the longest open first."""
        before = ("created_before", request.before.isoformat())
        # The oldest `limit` of each listing hold the oldest record of each of the `limit`
        # longest open checkouts (their order, the first record a checkout makes).
        oldest = [before, ("limit", str(request.limit))]
        # With them, stock held for an order that is not pending: cancelled (its release
        # skipped), confirmed (its commit not run) or never made (a caller's own reservation).
        pending, reserved = await asyncio.gather(
            list_records(
                self._orders, "/orders", OrderList, [("status", OrderStatus.PENDING), *oldest]
            ),
            list_records(
                self._inventory,
                "/reservations",
                ReservationList,
                [("status", ReservationStatus.RESERVED), *oldest],
            ),
        )
        order_ids = [order.order_id for order in pending]
        # Looked up by order, whatever their ids and however many are open: a checkout with
        # its order pending is reported with every record it left open.
        held, charged = await asyncio.gather(
            records_of_orders(
                self._inventory,
                "/reservations",
                ReservationList,
                order_ids,
                [("status", ReservationStatus.RESERVED), before],
            ),
            records_of_orders(
                self._payments,
                "/charges",
                ChargeList,
                order_ids,
                [("status", ChargeStatus.SUCCEEDED), before],
            ),
        )
        seen = {reservation.reservation_id for reservation in held}
        reservations = [*held, *(r for r in reserved if r.reservation_id not in seen)]
        records = [
            *(
                _open_record(order.order_id, f"order:{order.order_id} PENDING", order.created_at)
                for order in pending
            ),
            *(
                _open_record(
                    reservation.order_id,
                    f"reservation:{reservation.reservation_id} RESERVED",
                    reservation.created_at,
                )
                for reservation in reservations
                # Only a tombstone (never RESERVED) has no order.
                if reservation.order_id is not None
            ),
            *(
                _open_record(
                    charge.order_id, f"charge:{charge.charge_id} SUCCEEDED", charge.created_at
                )
                for charge in charged
                if charge.order_id is not None  # looked up by order: always there
            ),
        ]
        return open_sagas(records, request.limit)


async def list_records(
    http: ServiceClient,
    path: str,
    answer: type[RootModel[list[RecordT]]],
    query: Sequence[tuple[str, str]],
) -> list[RecordT]:
    """GET `path` with `query`: the list the service answers."""
    listed = await call_service(http, "GET", f"{path}?{urlencode(query)}", answer)
    return listed.root


async def records_of_orders(
    http: ServiceClient,
    path: str,
    answer: type[RootModel[list[RecordT]]],
    order_ids: Sequence[str],
    query: Sequence[tuple[str, str]],
) -> list[RecordT]:
    """The records at `path` of these orders that `query` lets through: one call per
    MAX_ORDER_IDS orders, at once, each answering all it finds (a checkout has one of each per
    order)."""
    every = ("limit", str(MAX_LIST_LIMIT))
    starts = range(0, len(order_ids), MAX_ORDER_IDS)
    chunks = [order_ids[start : start + MAX_ORDER_IDS] for start in starts]
    found = await asyncio.gather(
        *(
            list_records(http, path, answer, [*(("order_id", i) for i in chunk), *query, every])
            for chunk in chunks
        )
    )
    return [record for records in found for record in records]
