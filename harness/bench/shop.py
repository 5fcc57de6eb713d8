"""What every mode of the bench sells: one SKU, stocked and priced once, and the request for it.

Shared by the bench (harness/bench/benchmark.py) and the DBOS peer
(harness/bench/dbos_measure.py), so every mode places the same checkout.
"""

import httpx

from models.checkout import CartItem, CheckoutRequest

BENCH_SKU = "BENCH-ITEM"
BENCH_STOCK = 10_000_000
# Its unit price in each currency the shop sells in (services.orders.pricing).
BENCH_PRICES = {"EUR": 1000, "USD": 1100}
# The bench's customers: each has a long-lived loyalty workflow.
BENCH_CUSTOMERS = 20


def bench_customer_id(order_id: str) -> str:
    """The customer who places this order: one of BENCH_CUSTOMERS, the same in every mode."""
    return f"bench-{sum(order_id.encode()) % BENCH_CUSTOMERS}"


def bench_customer_ids() -> list[str]:
    return [f"bench-{number}" for number in range(BENCH_CUSTOMERS)]


def bench_request(order_id: str, payment_token: str) -> CheckoutRequest:
    """`payment_token`: the test card CARD_OK's, tokenized once for the whole run."""
    customer = bench_customer_id(order_id)
    return CheckoutRequest(
        order_id=order_id,
        customer_id=customer,
        email=f"{customer}@example.com",
        payment_token=payment_token,
        items=[CartItem(sku=BENCH_SKU, quantity=1)],
    )


async def stock_bench_sku(urls: dict[str, str], headers: dict[str, str]) -> None:
    """Give BENCH_SKU its stock (inventory) and its prices (orders); `urls`: the services'."""
    async with httpx.AsyncClient(headers=headers, timeout=10.0) as http:
        stocked = await http.put(
            f"{urls['inventory']}/stock/{BENCH_SKU}",
            json={"name": "Benchmark item", "available": BENCH_STOCK},
        )
        stocked.raise_for_status()
        priced = await http.put(
            f"{urls['orders']}/prices/{BENCH_SKU}", json={"prices": BENCH_PRICES}
        )
        priced.raise_for_status()
