"""The fan-out's services on their own (email, warehouse, analytics, loyalty, dead letters):
idempotency by event id, list endpoints, the fault hooks; and the bounded dedup set."""

import time
import uuid
from typing import Any

import httpx
import pytest

from models.payments import CARD_OK
from services.auth import headers_from_env
from tests.support.cards import card_token
from workflows.fanout import RecentIds


class Api:
    def __init__(self, urls: dict[str, str]) -> None:
        self.urls = urls

    def call(self, method: str, service: str, path: str, body: Any = None) -> httpx.Response:
        return httpx.request(
            method, self.urls[service] + path, json=body, timeout=15, headers=headers_from_env()
        )


@pytest.fixture
def api(services: dict[str, str]) -> Api:
    return Api(services)


def key(prefix: str = "evt") -> str:
    return f"checkout-{prefix}-{uuid.uuid4().hex[:8]}:OrderConfirmed"


def test_email_one_message_per_key(api: Api) -> None:
    order = f"o-{uuid.uuid4().hex[:8]}"
    mail = {
        "email_id": key(),
        "order_id": order,
        "to": "a@example.com",
        "subject": "S",
        "body": "B",
    }

    first = api.call("POST", "email", "/emails", mail)
    repeat = api.call("POST", "email", "/emails", mail)
    conflict = api.call("POST", "email", "/emails", {**mail, "body": "other"})

    assert (first.status_code, repeat.status_code) == (201, 200)
    assert repeat.json() == first.json()
    assert conflict.status_code == 409 and conflict.json()["code"] == "idempotency_key_reused"
    assert [
        m["email_id"] for m in api.call("GET", "email", f"/emails?order_id={order}").json()
    ] == [mail["email_id"]]
    assert api.call("GET", "email", f"/emails/{mail['email_id']}").json()["to"] == "a@example.com"


def test_email_down_answers_503_but_health(api: Api) -> None:
    mail = {
        "email_id": key(),
        "order_id": "o-down",
        "to": "a@example.com",
        "subject": "S",
        "body": "B",
    }
    assert api.call("PUT", "email", "/admin/fault", {"fail": True}).status_code == 200
    try:
        down = api.call("POST", "email", "/emails", mail)
        assert down.status_code == 503 and down.json()["code"] == "service_unavailable"
        assert api.call("GET", "email", "/health").status_code == 200
        assert api.call("GET", "email", "/admin/fault").json() == {
            "fail": True,
            "delay_seconds": 0.0,
            "paths": [],
            "error_rate": 0.0,
            "hang_seconds": 0.0,
            "hang_rate": 1.0,
            "seed": None,
        }
    finally:
        api.call("PUT", "email", "/admin/fault", {})
    assert api.call("POST", "email", "/emails", mail).status_code == 201


def test_fault_limited_to_paths_spares_the_rest(api: Api) -> None:
    """The core services take faults too; `paths` aims one at refunds, not at charges."""
    charge_id = key()
    charge = {
        "charge_id": charge_id,
        "order_id": "o-refund-down",
        "amount_cents": 1200,
        "currency": "EUR",
        "payment_token": card_token(api.urls["payments"], CARD_OK),
    }
    fault = {"fail": True, "paths": ["/charges/"]}
    assert api.call("PUT", "payments", "/admin/fault", fault).status_code == 200
    try:
        charged = api.call("POST", "payments", "/charges", charge)
        refund = api.call("POST", "payments", f"/charges/{charge_id}/refund", {"reason": "r"})
        assert charged.status_code == 201
        assert refund.status_code == 503 and refund.json()["code"] == "service_unavailable"
        assert api.call("GET", "payments", "/health").status_code == 200
    finally:
        api.call("PUT", "payments", "/admin/fault", {})
    refunded = api.call("POST", "payments", f"/charges/{charge_id}/refund", {"reason": "r"})
    assert refunded.status_code == 200 and refunded.json()["status"] == "REFUNDED"


def test_warehouse_one_shipment_per_order_and_slow_fault(api: Api) -> None:
    order = f"o-{uuid.uuid4().hex[:8]}"
    event = key()
    shipment = {
        "order_id": order,
        "event_id": event,
        "customer_id": "c1",
        "lines": [{"sku": "MUG-BLUE", "quantity": 2}],
    }
    assert api.call("PUT", "warehouse", "/admin/fault", {"delay_seconds": 1}).status_code == 200
    try:
        started = time.monotonic()
        first = api.call("POST", "warehouse", "/shipments", shipment)
        assert time.monotonic() - started >= 1.0
    finally:
        api.call("PUT", "warehouse", "/admin/fault", {})
    repeat = api.call("POST", "warehouse", "/shipments", shipment)
    other_event = api.call("POST", "warehouse", "/shipments", {**shipment, "event_id": key()})

    assert (first.status_code, repeat.status_code) == (201, 200)
    assert first.json()["status"] == "REQUESTED"
    assert other_event.status_code == 409
    assert len(api.call("GET", "warehouse", f"/shipments?order_id={order}").json()) == 1
    assert api.call("GET", "warehouse", f"/shipments/{order}").json()["event_id"] == event


def test_analytics_counts_each_event_once(api: Api) -> None:
    before = api.call("GET", "analytics", "/counts").json()
    record = {
        "event_id": key(),
        "event_type": "OrderRejected",
        "order_id": f"o-{uuid.uuid4().hex[:8]}",
        "total_cents": 100,
        "currency": "EUR",
    }

    statuses = [api.call("POST", "analytics", "/events", record).status_code for _ in range(3)]

    after = api.call("GET", "analytics", "/counts").json()
    assert statuses == [201, 200, 200]
    assert after["counts"].get("OrderRejected", 0) == before["counts"].get("OrderRejected", 0) + 1
    assert after["total"] == before["total"] + 1


def test_loyalty_books_points_once_per_event(api: Api) -> None:
    customer = f"c-{uuid.uuid4().hex[:8]}"
    entry = {"entry_id": key(), "customer_id": customer, "order_id": "o1", "points": 45}

    statuses = [api.call("POST", "loyalty", "/ledger", entry).status_code for _ in range(2)]
    api.call("POST", "loyalty", "/ledger", {**entry, "entry_id": key(), "points": 5})

    assert statuses == [201, 200]
    assert api.call("GET", "loyalty", f"/customers/{customer}").json() == {
        "customer_id": customer,
        "points": 50,
        "entries": 2,
    }
    assert len(api.call("GET", "loyalty", f"/ledger?customer_id={customer}").json()) == 2


def _letter(letter_id: str, failure_id: str, redrive: int = 0) -> dict[str, Any]:
    event_id = letter_id.removesuffix(":receipt")
    return {
        "letter_id": letter_id,
        "failure_id": failure_id,
        "consumer": "receipt",
        "event": {
            "type": "OrderConfirmed",
            "event_id": event_id,
            "order_id": "o1",
            "customer_id": "c1",
            "email": "a@example.com",
            "lines": [{"sku": "MUG-BLUE", "quantity": 1, "unit_price_cents": 100}],
            "total_cents": 100,
            "currency": "EUR",
            "occurred_at": "2026-01-01T00:00:00Z",
        },
        "target": {
            "kind": "job",
            "workflow_type": "SendReceipt",
            "workflow_id": letter_id,
            "task_queue": "checkout",
        },
        "error": "service_unavailable: 503",
        "attempts": 5,
        "redrive": redrive,
    }


def test_dead_letters_upsert_and_redrive_transitions(api: Api) -> None:
    letter_id = f"{key()}:receipt"

    created = api.call("POST", "deadletters", "/deadletters", _letter(letter_id, "f1"))
    same_failure = api.call("POST", "deadletters", "/deadletters", _letter(letter_id, "f1"))
    assert (created.status_code, same_failure.status_code) == (201, 200)
    assert (same_failure.json()["status"], same_failure.json()["failures"]) == ("OPEN", 1)

    def mark(n: int) -> httpx.Response:
        return api.call("POST", "deadletters", f"/deadletters/{letter_id}/redriven", {"redrive": n})

    assert mark(1).json()["status"] == "REDRIVEN"
    assert mark(1).json()["redrives"] == 1  # a repeat changes nothing
    # Redrive 1 failed again: the record reopens, counts the failure, keeps redrives = 1.
    reopened = api.call("POST", "deadletters", "/deadletters", _letter(letter_id, "f2", 1)).json()
    assert (reopened["status"], reopened["failures"], reopened["redrives"]) == ("OPEN", 2, 1)
    stale = mark(1)
    assert stale.status_code == 409 and stale.json()["code"] == "stale_redrive"
    assert mark(2).json()["status"] == "REDRIVEN"

    listed = api.call("GET", "deadletters", "/deadletters?status=REDRIVEN&consumer=receipt").json()
    assert letter_id in {item["letter_id"] for item in listed}
    assert api.call("GET", "deadletters", "/deadletters/nope:receipt").status_code == 404


def test_recent_ids_keeps_the_newest() -> None:
    ids = RecentIds(["a", "b", "c"], limit=3)
    ids.add("d")
    ids.add("b")  # seen again: now the newest

    assert ids.newest() == ["c", "d", "b"]
    assert "a" not in ids and "b" in ids and len(ids) == 3
