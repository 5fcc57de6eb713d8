"""SKUs for a test: each test stocks (PUT /stock/{sku}) and prices (PUT /prices/{sku}) its own
SKUs so tests share no state."""

import uuid
from collections.abc import Mapping

import httpx

from services.auth import headers_from_env
from services.orders.pricing import SOLD_CURRENCIES


def put_stock(inventory_url: str, sku: str, available: int) -> str:
    """Set `sku`'s available stock in the inventory service; returns the SKU."""
    httpx.put(
        f"{inventory_url}/stock/{sku}",
        json={"name": sku.title(), "available": available},
        timeout=10,
        headers=headers_from_env(),
    ).raise_for_status()
    return sku


def put_price(orders_url: str, sku: str, unit_price_cents: int) -> str:
    """Price `sku` at `unit_price_cents` in each currency the shop sells in; returns it."""
    httpx.put(
        f"{orders_url}/prices/{sku}",
        json={"prices": dict.fromkeys(SOLD_CURRENCIES, unit_price_cents)},
        timeout=10,
        headers=headers_from_env(),
    ).raise_for_status()
    return sku


def new_stocked_sku(
    services: Mapping[str, str], prefix: str, available: int = 5, unit_price_cents: int = 1250
) -> str:
    """A new SKU the shop sells (`PREFIX-1A2B3C4D`): `available` units in the inventory,
    `unit_price_cents` in every currency in the orders service. `services`: name -> URL."""
    sku = f"{prefix}-{uuid.uuid4().hex[:8].upper()}"
    put_price(services["orders"], sku, unit_price_cents)
    return put_stock(services["inventory"], sku, available)
