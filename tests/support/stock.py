"""Stock for a test: each test stocks its own SKUs (PUT /stock/{sku}) so tests share no state."""

import uuid

import httpx

from services.auth import headers_from_env


def put_stock(inventory_url: str, sku: str, available: int) -> str:
    """Set `sku`'s available stock in the inventory service; returns the SKU."""
    httpx.put(
        f"{inventory_url}/stock/{sku}",
        json={"name": sku.title(), "available": available},
        timeout=10,
        headers=headers_from_env(),
    ).raise_for_status()
    return sku


def new_stocked_sku(inventory_url: str, prefix: str, available: int = 5) -> str:
    """A new SKU (`PREFIX-1A2B3C4D`) with `available` units."""
    return put_stock(inventory_url, f"{prefix}-{uuid.uuid4().hex[:8].upper()}", available)
