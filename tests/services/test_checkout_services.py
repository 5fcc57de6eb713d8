"""The orders, inventory and payments services, each run as a real process with its own
SQLite file, driven over HTTP. Tests share one process per service, so each uses fresh ids
(and a test that changes prices, SKUs of its own).
"""

import asyncio
import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest

from models.common import PAYMENT_TOKEN_PATTERN, ServiceError
from models.inventory import Reservation, ReservationStatus, StockLevel
from models.orders import Order, OrderLine, OrderStatus
from models.payments import CARD_DECLINED, CARD_FLAKY, CARD_OK, Charge, ChargeStatus, PaymentMethod
from services.auth import (
    PUBLISHABLE_KEY_HEADER,
    headers_from_env,
    publishable_key_from_env,
    publishable_key_headers,
)
from services.orders.pricing import CATALOGUE_PRICES, SOLD_CURRENCIES
from tests.support.card_numbers import find_card_numbers
from tests.support.cards import card_token, random_card

REPO_ROOT = Path(__file__).resolve().parents[2]
STARTUP_SECONDS = 10.0


# --- Starting and stopping service processes -------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Service:
    name: str
    url: str
    db_path: Path
    process: "subprocess.Popen[bytes]"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class StartService(Protocol):
    def __call__(
        self, name: str, db_path: Path | None = None, env: Mapping[str, str] | None = None
    ) -> Service: ...


@pytest.fixture(scope="module")
def start_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartService]:
    """Start `python -m services.NAME` on a free port; wait for /health; stop all at the end."""
    workdir = tmp_path_factory.mktemp("services")
    started: list[Service] = []

    def start(
        name: str, db_path: Path | None = None, env: Mapping[str, str] | None = None
    ) -> Service:
        port = free_port()
        db_path = db_path or workdir / f"{name}-{uuid.uuid4().hex[:8]}.sqlite"
        log_path = workdir / f"{name}-{port}.log"
        child_env = {k: v for k, v in os.environ.items() if k != "PAYMENTS_FLAKY_FAILURES"}
        child_env.update(env or {})
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    f"services.{name}",
                    "--port",
                    str(port),
                    "--db",
                    str(db_path),
                ],
                cwd=REPO_ROOT,
                env=child_env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        service = Service(name, f"http://127.0.0.1:{port}", db_path, process)
        started.append(service)
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if process.poll() is not None:
                pytest.fail(f"{name} exited with {process.returncode}:\n{log_path.read_text()}")
            try:
                if httpx.get(f"{service.url}/health", timeout=1).status_code == 200:
                    return service
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                service.stop()
                pytest.fail(f"{name} not healthy in {STARTUP_SECONDS}s:\n{log_path.read_text()}")
            time.sleep(0.05)

    yield start
    for service in started:
        service.stop()


@pytest.fixture(scope="module")
def orders_service(start_service: StartService) -> Service:
    return start_service("orders")


@pytest.fixture(scope="module")
def inventory_service(start_service: StartService) -> Service:
    return start_service("inventory")


@pytest.fixture(scope="module")
def payments_service(start_service: StartService) -> Service:
    return start_service("payments")


@pytest.fixture
def orders(orders_service: Service) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=orders_service.url, timeout=30, headers=headers_from_env()
    ) as client:
        yield client


@pytest.fixture
def inventory(inventory_service: Service) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=inventory_service.url, timeout=30, headers=headers_from_env()
    ) as client:
        yield client


@pytest.fixture
def payments(payments_service: Service) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=payments_service.url, timeout=30, headers=headers_from_env()
    ) as client:
        yield client


# --- Helpers ---------------------------------------------------------------------------------


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def new_sku(inventory: httpx.Client, available: int) -> str:
    sku = f"T-{uuid.uuid4().hex[:12].upper()}"
    response = inventory.put(f"/stock/{sku}", json={"name": "Test item", "available": available})
    assert response.status_code == 200, response.text
    return sku


def error(response: httpx.Response) -> ServiceError:
    return ServiceError.model_validate(response.json())


def without_created_at(record: dict[str, Any]) -> dict[str, Any]:
    """`record` without its created_at, which must be a time in UTC."""
    assert datetime.fromisoformat(record["created_at"]).utcoffset() == timedelta(0), record
    return {name: value for name, value in record.items() if name != "created_at"}


def stock(inventory: httpx.Client, sku: str) -> StockLevel:
    response = inventory.get(f"/stock/{sku}")
    assert response.status_code == 200, response.text
    return StockLevel.model_validate(response.json())


def units(level: StockLevel) -> tuple[int, int, int]:
    return level.available, level.reserved, level.committed


def order_body(order_id: str, **changes: Any) -> dict[str, Any]:
    """Two lines of the seeded catalogue: 2 x MUG-BLUE at 12.50 EUR, 1 x TEE-M at 20.00."""
    body: dict[str, Any] = {
        "order_id": order_id,
        "customer_id": "cust-1",
        "currency": "EUR",
        "lines": [{"sku": "MUG-BLUE", "quantity": 2}, {"sku": "TEE-M", "quantity": 1}],
    }
    return body | changes


SEEDED_TOTAL = 2 * 1250 + 2000


def new_priced_sku(orders: httpx.Client, **prices: int) -> str:
    """A SKU of this test's own, priced `prices` (currency -> unit price)."""
    sku = f"P-{uuid.uuid4().hex[:12].upper()}"
    response = orders.put(f"/prices/{sku}", json={"prices": prices})
    assert response.status_code == 200, response.text
    return sku


def reserve_body(reservation_id: str, *lines: tuple[str, int]) -> dict[str, Any]:
    return {
        "reservation_id": reservation_id,
        "order_id": "order-1",
        "lines": [{"sku": sku, "quantity": quantity} for sku, quantity in lines],
    }


# --- Every service -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["orders", "inventory", "payments"])
def test_health(name: str, request: pytest.FixtureRequest) -> None:
    service: Service = request.getfixturevalue(f"{name}_service")
    response = httpx.get(f"{service.url}/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "service": name}


@pytest.mark.parametrize("name", ["orders", "inventory", "payments"])
def test_unknown_route_is_a_service_error(name: str, request: pytest.FixtureRequest) -> None:
    service: Service = request.getfixturevalue(f"{name}_service")
    response = httpx.get(f"{service.url}/no-such-thing")
    assert response.status_code == 404
    assert error(response).code == "not_found"


# --- Orders ----------------------------------------------------------------------------------


def test_create_order_is_idempotent(orders: httpx.Client) -> None:
    order_id = new_id("ord")
    first = orders.post("/orders", json=order_body(order_id))
    assert first.status_code == 201, first.text
    order = Order.model_validate(first.json())
    assert order.status == OrderStatus.PENDING
    assert order.total_cents == SEEDED_TOTAL

    again = orders.post("/orders", json=order_body(order_id))
    assert (again.status_code, again.json()) == (201, first.json())
    assert [o["order_id"] for o in orders.get("/orders").json()].count(order_id) == 1

    reused = orders.post("/orders", json=order_body(order_id, customer_id="someone-else"))
    assert reused.status_code == 409
    assert error(reused).code == "idempotency_key_reused"
    assert orders.get(f"/orders/{order_id}").json() == first.json()


def test_confirm_order(orders: httpx.Client) -> None:
    missing = orders.post(f"/orders/{new_id('ord')}/confirm")
    assert missing.status_code == 404
    assert error(missing).code == "order_not_found"

    order_id = new_id("ord")
    assert orders.post("/orders", json=order_body(order_id)).status_code == 201
    confirmed = orders.post(f"/orders/{order_id}/confirm")
    assert confirmed.status_code == 200
    assert confirmed.json()["status"] == OrderStatus.CONFIRMED
    again = orders.post(f"/orders/{order_id}/confirm")
    assert (again.status_code, again.json()) == (200, confirmed.json())

    cancel = orders.post(f"/orders/{order_id}/cancel", json={"reason": "too late"})
    assert cancel.status_code == 409
    assert error(cancel).code == "order_confirmed"
    assert orders.get(f"/orders/{order_id}").json()["status"] == OrderStatus.CONFIRMED


def test_cancel_order(orders: httpx.Client) -> None:
    order_id = new_id("ord")
    assert orders.post("/orders", json=order_body(order_id)).status_code == 201
    cancelled = orders.post(f"/orders/{order_id}/cancel", json={"reason": "payment declined"})
    assert cancelled.status_code == 200
    order = Order.model_validate(cancelled.json())
    assert (order.status, order.cancel_reason) == (OrderStatus.CANCELLED, "payment declined")
    assert order.total_cents == SEEDED_TOTAL

    # A repeat changes nothing, even with other words: the first reason stands.
    again = orders.post(f"/orders/{order_id}/cancel", json={"reason": "retry"})
    assert (again.status_code, again.json()) == (200, cancelled.json())

    confirm = orders.post(f"/orders/{order_id}/confirm")
    assert confirm.status_code == 409
    assert error(confirm).code == "order_cancelled"


def test_cancel_before_create_leaves_a_tombstone(orders: httpx.Client) -> None:
    order_id = new_id("ord")
    tombstone = orders.post(f"/orders/{order_id}/cancel", json={"reason": "saga timed out"})
    assert tombstone.status_code == 200
    # A tombstone is a record like any other: opened when it was written.
    assert without_created_at(tombstone.json()) == {
        "order_id": order_id,
        "customer_id": "",
        "currency": "XXX",
        "lines": [],
        "total_cents": 0,
        "status": "CANCELLED",
        "cancel_reason": "saga timed out",
    }

    late = orders.post("/orders", json=order_body(order_id))
    assert late.json() == tombstone.json()
    assert orders.get(f"/orders/{order_id}").json()["status"] == OrderStatus.CANCELLED
    pending = orders.get("/orders", params={"status": "PENDING"}).json()
    assert order_id not in [o["order_id"] for o in pending]
    cancelled = orders.get("/orders", params={"status": "CANCELLED"}).json()
    assert [o["order_id"] for o in cancelled].count(order_id) == 1


def test_list_orders_by_status(orders: httpx.Client) -> None:
    order_id = new_id("ord")
    assert orders.post("/orders", json=order_body(order_id)).status_code == 201
    pending = orders.get("/orders", params={"status": "PENDING"}).json()
    assert order_id in [o["order_id"] for o in pending]
    assert {o["status"] for o in pending} == {"PENDING"}

    bad = orders.get("/orders", params={"status": "LOST"})
    assert bad.status_code == 422
    assert error(bad).field == "status"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"lines": [{"sku": "MUG-BLUE", "quantity": 0}]}, "lines.0.quantity"),
        ({"lines": []}, "lines"),
        ({"currency": "euro"}, "currency"),
        ({"order_id": "-starts-with-dash"}, "order_id"),
    ],
)
def test_bad_order_is_422_naming_the_field(
    orders: httpx.Client, change: dict[str, Any], field: str
) -> None:
    order_id = new_id("ord")
    response = orders.post("/orders", json=order_body(order_id) | change)
    assert response.status_code == 422
    failure = error(response)
    assert (failure.code, failure.field) == ("invalid_request", field)
    assert failure.message
    assert orders.get(f"/orders/{order_id}").status_code == 404


@pytest.mark.parametrize(
    "content", [b"", b"{not json", b"[]", b'{"order_id": "x"}', b'"just a string"']
)
def test_malformed_body_is_422_not_500(orders: httpx.Client, content: bytes) -> None:
    response = orders.post("/orders", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert error(response).code == "invalid_request"


# --- Pricing (orders service) ----------------------------------------------------------------


def test_prices_seeded_once_and_kept_across_a_restart(
    start_service: StartService, tmp_path: Path
) -> None:
    db_path = tmp_path / "orders.sqlite"
    first = start_service("orders", db_path=db_path)
    with httpx.Client(base_url=first.url, headers=headers_from_env()) as client:
        listed = {p["sku"]: p["prices"] for p in client.get("/prices").json()}
        assert listed == CATALOGUE_PRICES
        assert set(SOLD_CURRENCIES) == {"EUR", "USD"}
        changed = client.put("/prices/MUG-BLUE", json={"prices": {"EUR": 1300, "USD": 1400}})
        assert changed.json() == {"sku": "MUG-BLUE", "prices": {"EUR": 1300, "USD": 1400}}
    first.stop()

    # A restart on the same file keeps what the admin set.
    second = start_service("orders", db_path=db_path)
    with httpx.Client(base_url=second.url, headers=headers_from_env()) as client:
        assert client.get("/prices/MUG-BLUE").json()["prices"] == {"EUR": 1300, "USD": 1400}
        assert len(client.get("/prices").json()) == len(CATALOGUE_PRICES)


def test_order_is_priced_from_the_shops_prices(orders: httpx.Client) -> None:
    mug, tee = new_priced_sku(orders, EUR=700, USD=800), new_priced_sku(orders, EUR=5, USD=6)
    order_id = new_id("ord")
    body = order_body(order_id, currency="USD", lines=[{"sku": mug, "quantity": 3}])
    body["lines"].append({"sku": tee, "quantity": 1})

    created = orders.post("/orders", json=body)

    assert created.status_code == 201, created.text
    order = Order.model_validate(created.json())
    assert order.lines == [
        OrderLine(sku=mug, quantity=3, unit_price_cents=800),
        OrderLine(sku=tee, quantity=1, unit_price_cents=6),
    ]
    assert (order.total_cents, order.currency) == (3 * 800 + 6, "USD")
    assert orders.get(f"/orders/{order_id}").json() == created.json()


def test_price_changed_is_refused_and_writes_nothing(orders: httpx.Client) -> None:
    sku = new_priced_sku(orders, EUR=1000, USD=1100)
    order_id = new_id("ord")
    seen = order_body(order_id, lines=[{"sku": sku, "quantity": 2}], expected_total_cents=1800)

    refused = orders.post("/orders", json=seen)

    assert refused.status_code == 409
    failure = error(refused)
    assert (failure.code, failure.field) == ("price_changed", "expected_total_cents")
    assert failure.message == "the total is now 20.00 EUR, not 18.00 EUR"
    assert orders.get(f"/orders/{order_id}").status_code == 404
    # The total the shop asks for is accepted: nothing of the refusal stood in the way.
    accepted = orders.post("/orders", json=seen | {"expected_total_cents": 2000})
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["total_cents"] == 2000


@pytest.mark.parametrize(
    ("change", "code", "field"),
    [
        (
            {"lines": [{"sku": "MUG-BLUE", "quantity": 1}, {"sku": "NOT-SOLD", "quantity": 1}]},
            "unknown_sku",
            "lines.1.sku",
        ),
        # Three upper-case letters pass the model; the shop sells in EUR and USD only.
        ({"currency": "XYZ"}, "currency_not_sold", "currency"),
        ({"currency": "GBP"}, "currency_not_sold", "currency"),
    ],
)
def test_unknown_sku_or_unsold_currency_is_refused_naming_the_field(
    orders: httpx.Client, change: dict[str, Any], code: str, field: str
) -> None:
    order_id = new_id("ord")
    response = orders.post("/orders", json=order_body(order_id) | change)
    assert response.status_code == 422
    assert (error(response).code, error(response).field) == (code, field)
    assert orders.get(f"/orders/{order_id}").status_code == 404


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (
            {"lines": [{"sku": "MUG-BLUE", "quantity": 1, "unit_price_cents": 1}]},
            "lines.0.unit_price_cents",
        ),
        ({"total_cents": 1}, "total_cents"),
    ],
)
def test_a_price_from_the_caller_is_refused_not_dropped(
    orders: httpx.Client, change: dict[str, Any], field: str
) -> None:
    order_id = new_id("ord")
    response = orders.post("/orders", json=order_body(order_id) | change)
    assert response.status_code == 422
    assert (error(response).code, error(response).field) == ("invalid_request", field)
    assert orders.get(f"/orders/{order_id}").status_code == 404


def test_repeated_create_answers_the_first_price(orders: httpx.Client) -> None:
    sku = new_priced_sku(orders, EUR=1000, USD=1100)
    order_id = new_id("ord")
    body = order_body(order_id, lines=[{"sku": sku, "quantity": 1}], expected_total_cents=1000)
    first = orders.post("/orders", json=body)
    assert first.status_code == 201, first.text

    assert orders.put(f"/prices/{sku}", json={"prices": {"EUR": 1500, "USD": 1600}}).is_success
    again = orders.post("/orders", json=body)

    # The stored price is the price charged: a repeat (an activity's retry) gets the same.
    assert (again.status_code, again.json()) == (201, first.json())
    later = orders.post("/orders", json=body | {"order_id": new_id("ord")})
    assert error(later).code == "price_changed"


def test_order_too_large_is_refused(orders: httpx.Client) -> None:
    sku = new_priced_sku(orders, EUR=100_000_000, USD=100_000_000)
    order_id = new_id("ord")
    response = orders.post(
        "/orders", json=order_body(order_id, lines=[{"sku": sku, "quantity": 2}])
    )
    assert response.status_code == 422
    assert (error(response).code, error(response).field) == ("order_too_large", "lines")
    assert orders.get(f"/orders/{order_id}").status_code == 404


@pytest.mark.parametrize(
    ("prices", "code", "field"),
    [
        ({"EUR": 100}, "price_missing", "prices.USD"),
        ({"EUR": 100, "USD": 110, "GBP": 90}, "currency_not_sold", "prices.GBP"),
    ],
)
def test_set_prices_needs_every_sold_currency_and_no_other(
    orders: httpx.Client, prices: dict[str, int], code: str, field: str
) -> None:
    sku = f"P-{uuid.uuid4().hex[:12].upper()}"
    response = orders.put(f"/prices/{sku}", json={"prices": prices})
    assert response.status_code == 422
    assert (error(response).code, error(response).field) == (code, field)
    assert orders.get(f"/prices/{sku}").status_code == 404


def test_set_prices_is_an_admin_call(orders_service: Service, orders: httpx.Client) -> None:
    sku = f"P-{uuid.uuid4().hex[:12].upper()}"
    body = {"prices": {"EUR": 100, "USD": 110}}
    anonymous = httpx.put(f"{orders_service.url}/prices/{sku}", json=body, timeout=10)
    assert anonymous.status_code == 401
    assert orders.get(f"/prices/{sku}").status_code == 404
    negative = orders.put(f"/prices/{sku}", json={"prices": {"EUR": 0, "USD": 1}})
    assert (negative.status_code, error(negative).field) == (422, "prices.EUR")


# --- Inventory -------------------------------------------------------------------------------


def test_catalogue_seeded_once(start_service: StartService, tmp_path: Path) -> None:
    db_path = tmp_path / "inventory.sqlite"
    first = start_service("inventory", db_path=db_path)
    with httpx.Client(base_url=first.url, headers=headers_from_env()) as client:
        levels = {s["sku"]: (s["name"], s["available"]) for s in client.get("/stock").json()}
        assert levels == {
            "MUG-BLUE": ("Blue mug", 100),
            "TEE-M": ("T-shirt, size M", 100),
            "POSTER-A2": ("Poster A2", 50),
            "LIMITED-PRINT": ("Limited print", 3),
            "VINYL-SOLDOUT": ("Sold-out vinyl", 0),
        }
        soldout = client.post("/reservations", json=reserve_body("r-1", ("VINYL-SOLDOUT", 1)))
        assert soldout.status_code == 409
        assert error(soldout).code == "out_of_stock"
        assert client.put("/stock/MUG-BLUE", json={"name": "Blue mug", "available": 5}).is_success
    first.stop()

    # A restart on the same file must not refill what was sold.
    second = start_service("inventory", db_path=db_path)
    with httpx.Client(base_url=second.url, headers=headers_from_env()) as client:
        assert client.get("/stock/MUG-BLUE").json()["available"] == 5
        assert len(client.get("/stock").json()) == 5


def test_reserve_release_commit_conserve_stock(inventory: httpx.Client) -> None:
    sku = new_sku(inventory, 10)
    total = sum(units(stock(inventory, sku)))

    rid = new_id("res")
    first = inventory.post("/reservations", json=reserve_body(rid, (sku, 3)))
    assert first.status_code == 201, first.text
    assert Reservation.model_validate(first.json()).status == ReservationStatus.RESERVED
    assert units(stock(inventory, sku)) == (7, 3, 0)

    again = inventory.post("/reservations", json=reserve_body(rid, (sku, 3)))
    assert (again.status_code, again.json()) == (201, first.json())
    assert units(stock(inventory, sku)) == (7, 3, 0)
    listed = inventory.get("/reservations", params={"status": "RESERVED"}).json()
    assert [r["reservation_id"] for r in listed].count(rid) == 1

    reused = inventory.post("/reservations", json=reserve_body(rid, (sku, 4)))
    assert reused.status_code == 409
    assert error(reused).code == "idempotency_key_reused"
    assert units(stock(inventory, sku)) == (7, 3, 0)

    released = inventory.post(f"/reservations/{rid}/release")
    assert released.status_code == 200
    assert released.json()["status"] == ReservationStatus.RELEASED
    assert units(stock(inventory, sku)) == (10, 0, 0)
    assert inventory.post(f"/reservations/{rid}/release").json() == released.json()
    assert units(stock(inventory, sku)) == (10, 0, 0)
    commit_released = inventory.post(f"/reservations/{rid}/commit")
    assert commit_released.status_code == 409
    assert error(commit_released).code == "reservation_released"

    rid2 = new_id("res")
    assert inventory.post("/reservations", json=reserve_body(rid2, (sku, 4))).status_code == 201
    committed = inventory.post(f"/reservations/{rid2}/commit")
    assert committed.status_code == 200
    assert committed.json()["status"] == ReservationStatus.COMMITTED
    assert units(stock(inventory, sku)) == (6, 0, 4)
    assert inventory.post(f"/reservations/{rid2}/commit").json() == committed.json()
    assert units(stock(inventory, sku)) == (6, 0, 4)
    release_committed = inventory.post(f"/reservations/{rid2}/release")
    assert release_committed.status_code == 409
    assert error(release_committed).code == "reservation_committed"

    assert sum(units(stock(inventory, sku))) == total


def test_out_of_stock_changes_nothing_and_names_the_sku(inventory: httpx.Client) -> None:
    plenty, scarce = new_sku(inventory, 10), new_sku(inventory, 2)
    rid = new_id("res")
    body = reserve_body(rid, (plenty, 5), (scarce, 3))
    refused = inventory.post("/reservations", json=body)
    assert refused.status_code == 409
    failure = error(refused)
    assert (failure.code, failure.field) == ("out_of_stock", "lines.1.sku")
    assert scarce in failure.message
    assert "requested 3" in failure.message
    assert "available 2" in failure.message
    assert units(stock(inventory, plenty)) == (10, 0, 0)
    assert units(stock(inventory, scarce)) == (2, 0, 0)

    assert inventory.get(f"/reservations/{rid}").json()["status"] == ReservationStatus.REJECTED
    again = inventory.post("/reservations", json=body)
    assert (again.status_code, again.json()) == (409, refused.json())
    # Releasing a rejected one gives nothing back: it held nothing.
    release = inventory.post(f"/reservations/{rid}/release")
    assert release.status_code == 200
    assert release.json()["status"] == ReservationStatus.REJECTED
    assert units(stock(inventory, plenty)) == (10, 0, 0)
    commit = inventory.post(f"/reservations/{rid}/commit")
    assert commit.status_code == 409
    assert error(commit).code == "reservation_released"


def test_unknown_sku_is_422(inventory: httpx.Client) -> None:
    known = new_sku(inventory, 10)
    rid = new_id("res")
    response = inventory.post("/reservations", json=reserve_body(rid, (known, 1), ("NO-SUCH", 1)))
    assert response.status_code == 422
    assert (error(response).code, error(response).field) == ("unknown_sku", "lines.1.sku")
    assert inventory.get(f"/reservations/{rid}").status_code == 404
    assert units(stock(inventory, known)) == (10, 0, 0)
    assert inventory.get("/stock/NO-SUCH").status_code == 404


def test_release_before_reserve_leaves_a_tombstone(inventory: httpx.Client) -> None:
    sku = new_sku(inventory, 10)
    rid = new_id("res")
    tombstone = inventory.post(f"/reservations/{rid}/release")
    assert tombstone.status_code == 200
    assert without_created_at(tombstone.json()) == {
        "reservation_id": rid,
        "order_id": None,
        "lines": [],
        "status": "RELEASED",
    }
    late = inventory.post("/reservations", json=reserve_body(rid, (sku, 4)))
    assert late.json()["status"] == ReservationStatus.RELEASED
    assert units(stock(inventory, sku)) == (10, 0, 0)


def test_commit_unknown_reservation_is_404(inventory: httpx.Client) -> None:
    response = inventory.post(f"/reservations/{new_id('res')}/commit")
    assert response.status_code == 404
    assert error(response).code == "reservation_not_found"


def test_bad_reservation_is_422_naming_the_field(inventory: httpx.Client) -> None:
    sku = new_sku(inventory, 10)
    response = inventory.post("/reservations", json=reserve_body(new_id("res"), (sku, 0)))
    assert response.status_code == 422
    assert error(response).field == "lines.0.quantity"
    negative = inventory.put(f"/stock/{sku}", json={"name": "x", "available": -1})
    assert negative.status_code == 422
    assert error(negative).field == "available"
    assert units(stock(inventory, sku)) == (10, 0, 0)


async def test_concurrent_reservations_never_oversell(inventory_service: Service) -> None:
    limits = httpx.Limits(max_connections=50)
    async with httpx.AsyncClient(
        base_url=inventory_service.url, timeout=60, limits=limits, headers=headers_from_env()
    ) as client:
        sku = f"T-{uuid.uuid4().hex[:12].upper()}"
        put = await client.put(f"/stock/{sku}", json={"name": "Scarce", "available": 10})
        assert put.status_code == 200
        responses = await asyncio.gather(
            *(
                client.post("/reservations", json=reserve_body(new_id("res"), (sku, 1)))
                for _ in range(50)
            )
        )
        level = StockLevel.model_validate((await client.get(f"/stock/{sku}")).json())

    assert Counter(r.status_code for r in responses) == {201: 10, 409: 40}
    assert {error(r).code for r in responses if r.status_code == 409} == {"out_of_stock"}
    assert units(level) == (0, 10, 0)


# --- Payments --------------------------------------------------------------------------------


def tokenize(
    payments: httpx.Client, card: str, headers: Mapping[str, str] | None = None
) -> httpx.Response:
    """POST /payment-methods as a shop's front end: with the publishable key (or `headers`),
    never the service token."""
    if headers is None:
        headers = publishable_key_headers(publishable_key_from_env())
    url = str(payments.base_url.join("/payment-methods"))
    return httpx.post(url, json={"card_number": card}, headers=dict(headers), timeout=30)


def token_of(payments: httpx.Client, card: str = CARD_OK) -> str:
    return card_token(str(payments.base_url), card)


def charge_body(
    payments: httpx.Client, charge_id: str, card: str = CARD_OK, **changes: Any
) -> dict[str, Any]:
    """A charge of 44.99 EUR against `card`'s token (tokenized once per card and service)."""
    body: dict[str, Any] = {
        "charge_id": charge_id,
        "order_id": "order-1",
        "amount_cents": 4499,
        "currency": "EUR",
        "payment_token": token_of(payments, card),
    }
    return body | changes


def test_tokenize_answers_a_token_brand_and_last_four(payments: httpx.Client) -> None:
    first = tokenize(payments, "4242 4242 4242 4242")
    assert first.status_code == 201, first.text
    method = PaymentMethod.model_validate(first.json())
    assert (method.brand, method.last4) == ("visa", "4242")
    assert re.fullmatch(PAYMENT_TOKEN_PATTERN, method.token)
    assert set(first.json()) == {"token", "brand", "last4"}
    assert payments.get(f"/payment-methods/{method.token}").json() == first.json()
    # The same card again: another token (random, nothing derived from the number is kept).
    again = PaymentMethod.model_validate(tokenize(payments, CARD_OK).json())
    assert again.token != method.token and again.last4 == "4242"
    brands = {card: tokenize(payments, card).json()["brand"] for card in BRAND_CARDS}
    assert brands == BRAND_CARDS


BRAND_CARDS = {
    "5555555555554444": "mastercard",
    "2223003122003222": "mastercard",
    "378282246310005": "amex",
    "6011111111111117": "discover",
    "3566002020360505": "unknown",
}


def test_tokenize_needs_the_publishable_key_not_the_service_token(
    payments: httpx.Client,
) -> None:
    service_token = headers_from_env()
    for headers in (
        {},
        service_token,  # the services' bearer token is no publishable key
        {PUBLISHABLE_KEY_HEADER: service_token["Authorization"].removeprefix("Bearer ")},
        {PUBLISHABLE_KEY_HEADER: "pk_wrong_wrong_wrong_wrong"},
    ):
        refused = tokenize(payments, CARD_OK, headers)
        assert refused.status_code == 401, (headers, refused.text)
        assert error(refused).code == "unauthorized"
    # And the key opens nothing else: the other routes still want the service token.
    key = publishable_key_headers(publishable_key_from_env())
    assert (
        httpx.get(str(payments.base_url.join("/charges")), headers=key, timeout=30).status_code
        == 401
    )


@pytest.mark.parametrize(
    ("card", "message"),
    [
        ("4242-4242-4242-4241", "fails the Luhn check (mistyped card number?)"),
        ("4242", "must be 12 to 19 digits"),
        ("\uff14\uff12" * 8, "must be 12 to 19 digits"),  # full-width digits: not ASCII
    ],
)
def test_bad_card_is_422_and_not_echoed(payments: httpx.Client, card: str, message: str) -> None:
    response = tokenize(payments, card)
    assert response.status_code == 422
    assert (error(response).field, error(response).message) == ("card_number", message)
    assert card not in response.text and "4242" not in response.text


def test_a_card_number_where_a_token_goes_is_refused(payments: httpx.Client) -> None:
    charge_id = new_id("ch")
    for sent in (
        {"payment_token": CARD_OK},
        {"payment_token": "4242 4242 4242 4242"},
        {"card_number": CARD_OK},  # the old field: refused, not ignored
    ):
        body = {k: v for k, v in charge_body(payments, charge_id).items() if k != "payment_token"}
        response = payments.post("/charges", json=body | sent)
        assert response.status_code == 422, response.text
        assert error(response).field in ("payment_token", "card_number")
        assert "4242" not in response.text
    looks = payments.post(
        "/charges", json=charge_body(payments, charge_id) | {"payment_token": CARD_OK}
    )
    assert "looks like a card number" in error(looks).message
    assert payments.get(f"/charges/{charge_id}").status_code == 404


def test_unknown_token_is_refused_and_writes_nothing(payments: httpx.Client) -> None:
    charge_id = new_id("ch")
    body = charge_body(payments, charge_id) | {"payment_token": "pm_" + "x" * 24}
    response = payments.post("/charges", json=body)
    assert response.status_code == 422
    assert (error(response).code, error(response).field) == (
        "unknown_payment_token",
        "payment_token",
    )
    assert payments.get(f"/charges/{charge_id}").status_code == 404
    unknown = payments.get(f"/payment-methods/pm_{'y' * 24}")
    assert (unknown.status_code, error(unknown).code) == (404, "payment_method_not_found")


def test_charge_is_idempotent(payments: httpx.Client) -> None:
    charge_id, order_id = new_id("ch"), new_id("ord")
    first = payments.post("/charges", json=charge_body(payments, charge_id, order_id=order_id))
    assert first.status_code == 201, first.text
    charge = Charge.model_validate(first.json())
    assert (charge.status, charge.card_last4, charge.amount_cents) == (
        ChargeStatus.SUCCEEDED,
        CARD_OK[-4:],
        4499,
    )

    again = payments.post("/charges", json=charge_body(payments, charge_id, order_id=order_id))
    assert (again.status_code, again.json()) == (201, first.json())
    assert len(payments.get("/charges", params={"order_id": order_id}).json()) == 1

    reused = payments.post(
        "/charges", json=charge_body(payments, charge_id, order_id=order_id, amount_cents=1)
    )
    assert reused.status_code == 409
    assert error(reused).code == "idempotency_key_reused"
    # Another card under the same charge id is another request too.
    other_card = charge_body(payments, charge_id, CARD_DECLINED, order_id=order_id)
    assert error(payments.post("/charges", json=other_card)).code == "idempotency_key_reused"
    assert payments.get(f"/charges/{charge_id}").json() == first.json()


def test_declined_card_is_402_every_time(payments: httpx.Client) -> None:
    charge_id = new_id("ch")
    declined = payments.post("/charges", json=charge_body(payments, charge_id, CARD_DECLINED))
    assert declined.status_code == 402
    assert (error(declined).code, error(declined).field) == ("card_declined", "payment_token")
    again = payments.post("/charges", json=charge_body(payments, charge_id, CARD_DECLINED))
    assert (again.status_code, again.json()) == (402, declined.json())
    assert payments.get(f"/charges/{charge_id}").json()["status"] == ChargeStatus.DECLINED

    refund = payments.post(f"/charges/{charge_id}/refund", json={"reason": "saga"})
    assert refund.status_code == 200
    assert refund.json()["status"] == ChargeStatus.DECLINED
    assert refund.json()["refund_reason"] is None


def test_flaky_card_fails_twice_then_succeeds(payments: httpx.Client) -> None:
    charge_id = new_id("ch")
    body = charge_body(payments, charge_id, CARD_FLAKY)
    codes = [payments.post("/charges", json=body).status_code for _ in range(2)]
    assert codes == [503, 503]
    assert payments.get(f"/charges/{charge_id}").status_code == 404
    succeeded = payments.post("/charges", json=body)
    assert succeeded.status_code == 201
    assert succeeded.json()["status"] == ChargeStatus.SUCCEEDED
    assert payments.post("/charges", json=body).json() == succeeded.json()
    # The count is per charge: another charge with the flaky card starts over.
    another = charge_body(payments, new_id("ch"), CARD_FLAKY)
    assert payments.post("/charges", json=another).status_code == 503
    # Each token of the flaky card is flaky: the behaviour is the card's, kept with its token.
    fresh = tokenize(payments, CARD_FLAKY).json()["token"]
    assert (
        payments.post(
            "/charges", json=body | {"charge_id": new_id("ch"), "payment_token": fresh}
        ).status_code
        == 503
    )


def test_flaky_failures_from_environment(start_service: StartService) -> None:
    service = start_service("payments", env={"PAYMENTS_FLAKY_FAILURES": "1"})
    with httpx.Client(base_url=service.url, headers=headers_from_env()) as client:
        body = charge_body(client, new_id("ch"), CARD_FLAKY)
        assert [client.post("/charges", json=body).status_code for _ in range(2)] == [503, 201]


def test_refund(payments: httpx.Client) -> None:
    charge_id = new_id("ch")
    assert payments.post("/charges", json=charge_body(payments, charge_id)).status_code == 201
    refunded = payments.post(f"/charges/{charge_id}/refund", json={"reason": "out of stock"})
    assert refunded.status_code == 200
    charge = Charge.model_validate(refunded.json())
    assert (charge.status, charge.refund_reason) == (ChargeStatus.REFUNDED, "out of stock")
    again = payments.post(f"/charges/{charge_id}/refund", json={"reason": "retry"})
    assert again.json() == refunded.json()


def test_refund_before_charge_voids_a_late_charge(payments: httpx.Client) -> None:
    charge_id = new_id("ch")
    voided = payments.post(f"/charges/{charge_id}/refund", json={"reason": "saga timed out"})
    assert voided.status_code == 200
    assert without_created_at(voided.json()) == {
        "charge_id": charge_id,
        "order_id": None,
        "amount_cents": 0,
        "currency": "XXX",
        "card_last4": "",
        "status": "VOIDED",
        "refund_reason": "saga timed out",
    }
    late = payments.post("/charges", json=charge_body(payments, charge_id))
    assert late.status_code == 409
    assert error(late).code == "charge_voided"
    assert payments.get(f"/charges/{charge_id}").json() == voided.json()


def test_full_card_number_never_stored(start_service: StartService) -> None:
    """A payments service of its own: its SQLite files hold every card it was given, if any."""
    service = start_service("payments")
    mine = random_card()
    cards = (CARD_OK, CARD_DECLINED, CARD_FLAKY, mine)
    with httpx.Client(base_url=service.url, headers=headers_from_env()) as client:
        methods = [
            tokenize(client, card).json() for card in (*cards, "5" + mine[1:4] + " " + mine[4:])
        ]
        flaky_id = new_id("ch")
        for charge_id, card in [
            (new_id("ch"), CARD_OK),
            (new_id("ch"), CARD_DECLINED),
            (new_id("ch"), mine),
            *[(flaky_id, CARD_FLAKY)] * 3,
        ]:
            client.post("/charges", json=charge_body(client, charge_id, card))
        assert client.get(f"/charges/{flaky_id}").json()["card_last4"] == CARD_FLAKY[-4:]

    with sqlite3.connect(service.db_path) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        rows = {
            table: [tuple(row) for row in conn.execute(f"SELECT * FROM {table}")]
            for table in tables
        }
    stored = repr(rows)
    # What is kept of a card: its token, brand and last four, and the test cards' behaviour.
    assert [row[:3] for row in rows["payment_methods"][:4]] == [
        (m["token"], m["brand"], m["last4"]) for m in methods[:4]
    ]
    assert {row[3] for row in rows["payment_methods"]} == {"ok", "declined", "flaky"}
    assert find_card_numbers(stored) == []
    for card in cards:
        assert card not in stored and card[:12] not in stored
    # Nor anywhere in the files, the write-ahead log included.
    for path in service.db_path.parent.glob(f"{service.db_path.name}*"):
        raw = path.read_bytes()
        assert all(card.encode() not in raw and card[:12].encode() not in raw for card in cards)
        assert find_card_numbers(raw.decode("latin-1")) == []
