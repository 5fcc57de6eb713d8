"""Open records: the list endpoints' filters (status, created_before, order_id, limit) on the
real orders, inventory and payments services, and the checkout's finder for the reconciler
(activities/reconcile.py) that reads them.

The services are the session's, shared with other tests: each test makes records with ids of
its own (`open-RUN-...`) and asserts on those; records of other tests may come back too.
"""

import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from temporalio.testing import ActivityEnvironment

from activities.reconcile import CheckoutRecords, OpenRecord, open_sagas
from models.checkout import checkout_workflow_id
from models.common import DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT, MAX_ORDER_IDS, ServiceError
from models.inventory import Reservation, ReservationStatus
from models.orders import Order, OrderStatus
from models.payments import CARD_OK, Charge, ChargeStatus
from services.auth import bearer_headers, headers_from_env
from services.inventory.app import SCHEMA as INVENTORY_SCHEMA
from services.listing import Match, list_rows
from services.orders.app import SCHEMA as ORDERS_SCHEMA
from services.payments.app import SCHEMA as PAYMENTS_SCHEMA
from temporal_saga.models import FindOpenSagas, OpenSaga
from tests.support.cards import card_token
from tests.support.stock import new_stocked_sku
from worker.clients import service_clients
from worker.settings import Settings

UNIT_PRICE_CENTS = 1250


class Shop:
    """Makes and reads records in the services over HTTP, with the service token."""

    def __init__(self, urls: dict[str, str]) -> None:
        self.urls = urls
        self.sku = new_stocked_sku(urls, "OPEN", available=1000, unit_price_cents=UNIT_PRICE_CENTS)

    def call(
        self,
        method: str,
        service: str,
        path: str,
        body: dict[str, Any] | None = None,
        params: Sequence[tuple[str, str]] = (),
    ) -> httpx.Response:
        return httpx.request(
            method,
            self.urls[service] + path,
            json=body,
            params=list(params),
            timeout=15,
            headers=headers_from_env(),
        )

    def ok(self, method: str, service: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self.call(method, service, path, body)
        assert response.status_code in (200, 201), response.text
        return response.json()

    def order(self, order_id: str) -> Order:
        body = {
            "order_id": order_id,
            "customer_id": "cust-open",
            "currency": "EUR",
            "lines": [{"sku": self.sku, "quantity": 1}],
        }
        return Order.model_validate(self.ok("POST", "orders", "/orders", body))

    def reserve(self, reservation_id: str, order_id: str) -> Reservation:
        body = {
            "reservation_id": reservation_id,
            "order_id": order_id,
            "lines": [{"sku": self.sku, "quantity": 1}],
        }
        return Reservation.model_validate(self.ok("POST", "inventory", "/reservations", body))

    def charge(self, charge_id: str, order_id: str) -> Charge:
        body = {
            "charge_id": charge_id,
            "order_id": order_id,
            "amount_cents": UNIT_PRICE_CENTS,
            "currency": "EUR",
            "payment_token": card_token(self.urls["payments"], CARD_OK),
        }
        return Charge.model_validate(self.ok("POST", "payments", "/charges", body))

    def checkout(self, order_id: str) -> tuple[Order, Reservation, Charge]:
        """What a checkout makes up to its pivot, with the checkout's ids."""
        workflow_id = checkout_workflow_id(order_id)
        return (
            self.order(order_id),
            self.reserve(f"{workflow_id}:reserve_stock", order_id),
            self.charge(f"{workflow_id}:charge_payment", order_id),
        )

    def confirm(self, order_id: str) -> None:
        """The pivot and the commit after it."""
        reservation_id = f"{checkout_workflow_id(order_id)}:reserve_stock"
        self.ok("POST", "orders", f"/orders/{order_id}/confirm")
        self.ok("POST", "inventory", f"/reservations/{reservation_id}/commit")

    def compensate(self, order_id: str) -> None:
        workflow_id = checkout_workflow_id(order_id)
        reason = {"reason": "compensated"}
        self.ok("POST", "payments", f"/charges/{workflow_id}:charge_payment/refund", reason)
        self.ok("POST", "inventory", f"/reservations/{workflow_id}:reserve_stock/release")
        self.ok("POST", "orders", f"/orders/{order_id}/cancel", reason)

    def listed(
        self, service: str, path: str, params: Sequence[tuple[str, str]]
    ) -> list[dict[str, Any]]:
        response = self.call("GET", service, path, params=params)
        assert response.status_code == 200, response.text
        listed: list[dict[str, Any]] = response.json()
        return listed


@pytest.fixture
def shop(services: dict[str, str]) -> Shop:
    return Shop(services)


@pytest.fixture
def run() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture
async def checkout_records(checkout_settings: Settings) -> AsyncIterator[CheckoutRecords]:
    """The finder as the worker builds it (worker/clients.py service_clients)."""
    async with service_clients(checkout_settings) as clients:
        yield CheckoutRecords(clients.orders, clients.inventory, clients.payments)


async def find(
    records: CheckoutRecords, before: datetime, limit: int = MAX_LIST_LIMIT
) -> list[OpenSaga]:
    found: list[OpenSaga] = await ActivityEnvironment().run(
        records.find_open_checkouts, FindOpenSagas(before=before, limit=limit)
    )
    return found


def a_moment_later() -> datetime:
    """A time strictly after every record written so far and before any written next, to the
    millisecond the services store."""
    time.sleep(0.005)
    moment = datetime.now(UTC)
    time.sleep(0.005)
    return moment


def opened(created_at: str | None) -> datetime:
    assert created_at is not None
    return datetime.fromisoformat(created_at)


# -- the finder --------------------------------------------------------------------------------


async def test_finder_reports_each_checkout_left_open_once_with_its_open_records(
    shop: Shop, run: str, checkout_records: CheckoutRecords
) -> None:
    # Left open at each step, as a terminated checkout leaves it.
    created_only = shop.order(f"open-{run}-created")
    reserved_order = shop.order(f"open-{run}-reserved")
    reserved = shop.reserve(f"checkout-open-{run}-reserved:reserve_stock", reserved_order.order_id)
    charged_order, charged_reservation, charged = shop.checkout(f"open-{run}-charged")
    # Settled: confirmed (its charge stays SUCCEEDED for good, its stock committed), and
    # compensated.
    shop.checkout(f"open-{run}-confirmed")
    shop.confirm(f"open-{run}-confirmed")
    shop.checkout(f"open-{run}-compensated")
    shop.compensate(f"open-{run}-compensated")
    # An operator skipped the refund: the saga chose to leave the charge; the order is settled.
    skipped = shop.order(f"open-{run}-skipped")
    shop.charge(f"checkout-open-{run}-skipped:charge_payment", skipped.order_id)
    shop.ok("POST", "orders", f"/orders/{skipped.order_id}/cancel", {"reason": "skipped"})
    # Ids not in the checkout's scheme (a caller's own): reported by their order id.
    own_order = shop.order(f"open-{run}-own")
    own_charge = shop.charge(f"own-{run}-charge", own_order.order_id)
    orphan = shop.reserve(f"own-{run}-reservation", f"open-{run}-never-ordered")
    late_charged = shop.order(f"open-{run}-late-charged")

    before = a_moment_later()
    # Opened after `before`: not reported, nor a record of an older checkout.
    shop.checkout(f"open-{run}-newer")
    shop.charge(f"checkout-open-{run}-late-charged:charge_payment", late_charged.order_id)

    found = await find(checkout_records, before)

    mine = [saga for saga in found if saga.workflow_id.startswith(f"checkout-open-{run}-")]
    assert mine == [
        OpenSaga(
            workflow_id=f"checkout-open-{run}-created",
            records=[f"order:open-{run}-created PENDING"],
            opened_at=opened(created_only.created_at),
        ),
        OpenSaga(
            workflow_id=f"checkout-open-{run}-reserved",
            records=[
                f"order:open-{run}-reserved PENDING",
                f"reservation:{reserved.reservation_id} RESERVED",
            ],
            opened_at=opened(reserved_order.created_at),
        ),
        OpenSaga(
            workflow_id=f"checkout-open-{run}-charged",
            records=[
                f"order:open-{run}-charged PENDING",
                f"reservation:{charged_reservation.reservation_id} RESERVED",
                f"charge:{charged.charge_id} SUCCEEDED",
            ],
            opened_at=opened(charged_order.created_at),
        ),
        OpenSaga(
            workflow_id=f"checkout-open-{run}-own",
            records=[f"order:open-{run}-own PENDING", f"charge:{own_charge.charge_id} SUCCEEDED"],
            opened_at=opened(own_order.created_at),
        ),
        OpenSaga(
            workflow_id=f"checkout-open-{run}-never-ordered",
            records=[f"reservation:{orphan.reservation_id} RESERVED"],
            opened_at=opened(orphan.created_at),
        ),
        OpenSaga(
            workflow_id=f"checkout-open-{run}-late-charged",
            records=[f"order:open-{run}-late-charged PENDING"],
            opened_at=opened(late_charged.created_at),
        ),
    ]
    # Longest open first, everything opened before `before`, one saga per workflow id.
    assert [saga.opened_at for saga in found] == sorted(saga.opened_at for saga in found)
    assert all(saga.opened_at < before for saga in found)
    assert len({saga.workflow_id for saga in found}) == len(found)


async def test_finder_answers_at_most_limit_sagas_the_longest_open_first(
    shop: Shop, run: str, checkout_records: CheckoutRecords
) -> None:
    for n in range(3):
        shop.checkout(f"open-{run}-{n}")
    before = a_moment_later()

    every = await find(checkout_records, before)
    first_two = await find(checkout_records, before, limit=2)

    assert len(every) >= 3
    assert [(s.workflow_id, s.opened_at) for s in first_two] == [
        (s.workflow_id, s.opened_at) for s in every[:2]
    ]


async def test_finder_finds_nothing_before_the_first_record(
    checkout_records: CheckoutRecords,
) -> None:
    assert await find(checkout_records, datetime(2000, 1, 1, tzinfo=UTC)) == []


def test_open_sagas_groups_records_by_order_oldest_first() -> None:
    t0 = datetime(2030, 1, 1, tzinfo=UTC)

    def record(order_id: str, record: str, seconds: int) -> OpenRecord:
        return OpenRecord(
            order_id=order_id, record=record, opened_at=t0 + timedelta(seconds=seconds)
        )

    records = [
        record("b", "order:b PENDING", 2),
        record("a", "reservation:r-a RESERVED", 5),
        record("b", "charge:c-b SUCCEEDED", 1),
        record("c", "order:c PENDING", 3),
    ]

    assert open_sagas(records, limit=2) == [
        OpenSaga(
            workflow_id="checkout-b",
            records=["order:b PENDING", "charge:c-b SUCCEEDED"],
            opened_at=t0 + timedelta(seconds=1),
        ),
        OpenSaga(
            workflow_id="checkout-c",
            records=["order:c PENDING"],
            opened_at=t0 + timedelta(seconds=3),
        ),
    ]


# -- the list endpoints --------------------------------------------------------------------------


def test_listings_filter_on_status_and_time_on_the_server(shop: Shop, run: str) -> None:
    _, _, settled_charge = shop.checkout(f"open-{run}-settled")
    shop.confirm(f"open-{run}-settled")
    shop.checkout(f"open-{run}-compensated")
    shop.compensate(f"open-{run}-compensated")
    old_order, old_reservation, old_charge = shop.checkout(f"open-{run}-old")
    before = a_moment_later()
    new_order, new_reservation, new_charge = shop.checkout(f"open-{run}-new")

    # Per listing: what of this test's records it answers before `before`, and the newer one.
    cases = [
        ("orders", "/orders", OrderStatus.PENDING, "order_id", {old_order.order_id}, new_order),
        (
            "inventory",
            "/reservations",
            ReservationStatus.RESERVED,
            "reservation_id",
            {old_reservation.reservation_id},
            new_reservation,
        ),
        # A confirmed checkout's charge stays SUCCEEDED for good: the finder looks charges up
        # by their orders rather than list them.
        (
            "payments",
            "/charges",
            ChargeStatus.SUCCEEDED,
            "charge_id",
            {settled_charge.charge_id, old_charge.charge_id},
            new_charge,
        ),
    ]
    for service, path, status, key, expected, newer in cases:
        window = [("status", status), ("created_before", before.isoformat())]
        listed = shop.listed(service, path, [*window, ("limit", str(MAX_LIST_LIMIT))])
        assert {record["status"] for record in listed} == {status}, path
        times = [record["created_at"] for record in listed]
        assert times == sorted(times), path  # oldest first
        assert all(opened(at) < before for at in times), path
        mine = {record[key] for record in listed if f"open-{run}-" in record[key]}
        assert mine == expected, path

        # Without created_before, the newer one too.
        every = shop.listed(service, path, [("status", status), ("limit", str(MAX_LIST_LIMIT))])
        assert newer.model_dump(mode="json") in every, path

        # `limit`: the oldest that many; unless asked, DEFAULT_LIST_LIMIT.
        assert shop.listed(service, path, [*window, ("limit", "1")]) == listed[:1], path
        assert shop.listed(service, path, window) == listed[:DEFAULT_LIST_LIMIT], path


def test_listings_keep_their_earlier_parameters(shop: Shop, run: str) -> None:
    order, reservation, charge = shop.checkout(f"open-{run}-kept")

    pending = shop.listed("orders", "/orders", [("status", "PENDING")])
    assert order.order_id in [o["order_id"] for o in pending]
    reserved = shop.listed("inventory", "/reservations", [("status", "RESERVED")])
    assert reservation.reservation_id in [r["reservation_id"] for r in reserved]
    charges = shop.listed("payments", "/charges", [("order_id", order.order_id)])
    assert [Charge.model_validate(c) for c in charges] == [charge]
    assert charge.created_at is not None and opened(charge.created_at) < datetime.now(UTC)


def test_records_of_many_orders_at_once(shop: Shop, run: str) -> None:
    made = [shop.checkout(f"open-{run}-many-{n}") for n in range(3)]
    asked = [order.order_id for order, _, _ in made[:2]]
    named = [("order_id", order_id) for order_id in asked]

    reservations = shop.listed("inventory", "/reservations", named)
    charges = shop.listed("payments", "/charges", [*named, ("status", "SUCCEEDED")])

    assert [r["reservation_id"] for r in reservations] == [r.reservation_id for _, r, _ in made[:2]]
    assert [c["charge_id"] for c in charges] == [c.charge_id for _, _, c in made[:2]]
    refunded = shop.listed("payments", "/charges", [*named, ("status", "REFUNDED")])
    assert refunded == []


@pytest.mark.parametrize(
    ("service", "path"),
    [("orders", "/orders"), ("inventory", "/reservations"), ("payments", "/charges")],
)
@pytest.mark.parametrize(
    ("params", "field"),
    [
        ([("created_before", "yesterday")], "created_before"),
        # No offset: which moment that is depends on the machine.
        ([("created_before", "2030-01-31T12:00:00")], "created_before"),
        # In UTC, before the year 1.
        ([("created_before", "0001-01-01T00:00:00+01:00")], "created_before"),
        # A number: pydantic alone would read it as seconds since 1970.
        ([("created_before", "-4.754452867082056e-216")], "created_before"),
        ([("limit", "0")], "limit"),
        ([("limit", str(MAX_LIST_LIMIT + 1))], "limit"),
        ([("limit", "many")], "limit"),
        ([("status", "LOST")], "status"),
    ],
)
def test_bad_listing_query_is_422_naming_the_field(
    shop: Shop, service: str, path: str, params: list[tuple[str, str]], field: str
) -> None:
    response = shop.call("GET", service, path, params=params)
    assert response.status_code == 422, response.text
    failure = ServiceError.model_validate_json(response.content)
    assert (failure.code, failure.field) == ("invalid_request", field)


@pytest.mark.parametrize(
    ("service", "path"), [("inventory", "/reservations"), ("payments", "/charges")]
)
def test_too_many_or_bad_order_ids_are_422(shop: Shop, service: str, path: str) -> None:
    too_many = [("order_id", f"o{n}") for n in range(MAX_ORDER_IDS + 1)]
    for params, field in [(too_many, "order_id"), ([("order_id", "-x")], "order_id.0")]:
        response = shop.call("GET", service, path, params=params)
        assert response.status_code == 422, response.text
        failure = ServiceError.model_validate_json(response.content)
        assert (failure.code, failure.field) == ("invalid_request", field)
    assert shop.call("GET", service, path, params=too_many[:MAX_ORDER_IDS]).status_code == 200


@pytest.mark.parametrize(
    ("service", "path"),
    [("orders", "/orders"), ("inventory", "/reservations"), ("payments", "/charges")],
)
def test_listings_need_the_token(services: dict[str, str], service: str, path: str) -> None:
    query = {"created_before": datetime.now(UTC).isoformat(), "limit": "1"}
    for headers in ({}, bearer_headers("wrong-token-wrong-token")):
        response = httpx.get(services[service] + path, params=query, headers=headers, timeout=10)
        assert response.status_code == 401, response.text


class RecordingConnection(sqlite3.Connection):
    """Keeps the last statement run, to ask SQLite how it plans it."""

    statement: tuple[str, Sequence[Any]] = ("", ())

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        self.statement = (sql, parameters)
        return super().execute(sql, parameters)


@pytest.mark.parametrize(
    ("schema", "table", "matches", "index"),
    [
        (ORDERS_SCHEMA, "orders", {"status": "PENDING"}, "orders_by_status"),
        (INVENTORY_SCHEMA, "reservations", {"status": "RESERVED"}, "reservations_by_status"),
        (PAYMENTS_SCHEMA, "charges", {"status": "SUCCEEDED"}, "charges_by_status"),
        (
            INVENTORY_SCHEMA,
            "reservations",
            {"order_id": ["o1", "o2"], "status": "RESERVED"},
            "reservations_by_order",
        ),
        (
            PAYMENTS_SCHEMA,
            "charges",
            {"order_id": ["o1", "o2"], "status": "SUCCEEDED"},
            "charges_by_order",
        ),
    ],
)
def test_what_the_finder_asks_is_an_index_search(
    schema: str, table: str, matches: dict[str, Match], index: str
) -> None:
    conn = sqlite3.connect(":memory:", factory=RecordingConnection)
    assert isinstance(conn, RecordingConnection)
    conn.executescript(schema)

    list_rows(conn, table, matches, datetime.now(UTC), MAX_LIST_LIMIT)

    sql, params = conn.statement
    plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
    assert plan[0].startswith(f"SEARCH {table} USING INDEX {index} "), plan
    assert not [step for step in plan if step.startswith("SCAN")], plan
