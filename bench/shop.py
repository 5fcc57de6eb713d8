"""What every mode of the bench sells: one SKU, stocked once, and the request for it.

Shared by `checkout-saga bench` (bench/benchmark.py) and the DBOS peer (bench/dbos_measure.py),
so every mode places the same checkout.
"""

import httpx

from models.checkout import CartItem, CheckoutRequest
from models.payments import CARD_OK

BENCH_SKU = "BENCH-ITEM"
BENCH_STOCK = 10_000_000


def bench_request(order_id: str) -> CheckoutRequest:
    customer = f"bench-{sum(order_id.encode()) % 20}"
    return CheckoutRequest(
        order_id=order_id,
        customer_id=customer,
        email=f"{customer}@example.com",
        card_number=CARD_OK,
        items=[CartItem(sku=BENCH_SKU, quantity=1, unit_price_cents=1000)],
    )


async def stock_bench_sku(urls: dict[str, str], headers: dict[str, str]) -> None:
    """Give BENCH_SKU its stock in the inventory service (`urls`: the services' URLs)."""
    async with httpx.AsyncClient(headers=headers, timeout=10.0) as http:
        response = await http.put(
            f"{urls['inventory']}/stock/{BENCH_SKU}",
            json={"name": "Benchmark item", "available": BENCH_STOCK},
        )
        response.raise_for_status()
