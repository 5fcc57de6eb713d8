"""The services' own state, read and seeded over their HTTP APIs, for end-to-end tests."""

import uuid
from typing import Any

import httpx

from models.checkout import CartItem, CheckoutRequest
from services.auth import headers_from_env
from tests.support.cards import card_token
from tests.support.stock import new_stocked_sku


class Shop:
    """Reads and seeds the services' own state over their HTTP APIs."""

    def __init__(self, urls: dict[str, str]) -> None:
        self.urls = urls

    def get(self, service: str, path: str) -> Any:
        response = httpx.get(self.urls[service] + path, timeout=5, headers=headers_from_env())
        response.raise_for_status()
        return response.json()

    def new_sku(self, available: int, unit_price_cents: int) -> str:
        """A new SKU with `available` units at `unit_price_cents` (the shop's price)."""
        return new_stocked_sku(self.urls, "E2E", available, unit_price_cents)

    def level(self, sku: str) -> dict[str, int]:
        level: dict[str, int] = self.get("inventory", f"/stock/{sku}")
        return level

    def order_status(self, order_id: str) -> str:
        status: str = self.get("orders", f"/orders/{order_id}")["status"]
        return status

    def charges(self, order_id: str) -> list[dict[str, Any]]:
        charges: list[dict[str, Any]] = self.get("payments", f"/charges?order_id={order_id}")
        return charges

    def request(self, card: str, *items: tuple[str, int], **fields: Any) -> CheckoutRequest:
        """A checkout of `items` (SKU, quantity) paid with `card`, tokenized first."""
        return CheckoutRequest(
            order_id=f"e2e-{uuid.uuid4().hex[:10]}",
            customer_id="customer-e2e",
            email="e2e@example.com",
            payment_token=card_token(self.urls["payments"], card),
            items=[CartItem(sku=s, quantity=q) for s, q in items],
            **fields,
        )

    def reservation(self, reservation_id: str) -> dict[str, Any] | None:
        response = httpx.get(
            f"{self.urls['inventory']}/reservations/{reservation_id}",
            timeout=5,
            headers=headers_from_env(),
        )
        if response.status_code == 404:
            return None
        response.raise_for_status()
        found: dict[str, Any] = response.json()
        return found

    def post(self, service: str, path: str) -> Any:
        response = httpx.post(self.urls[service] + path, timeout=5, headers=headers_from_env())
        response.raise_for_status()
        return response.json()

    def put_fault(self, service: str, **fault: Any) -> None:
        """The service's fault injection (models/faults.py); no arguments: none."""
        response = httpx.put(
            f"{self.urls[service]}/admin/fault", json=fault, timeout=5, headers=headers_from_env()
        )
        response.raise_for_status()
