"""The shop's prices: each SKU's unit price in every currency the shop sells in.

The orders service prices an order itself, in the transaction that writes it: the price
stored on the order is the price charged, and no call to another service sits between the
two. A customer's request carries SKUs and quantities, never prices.
"""

import sqlite3
from collections.abc import Mapping
from typing import Final

from models.checkout import MAX_ORDER_TOTAL_CENTS
from models.orders import CreateOrder, OrderLine, SkuPrices
from services.errors import ServiceFailure

# Not a setting: selling in another currency means pricing every SKU in it, a change of the
# catalogue reviewed with the code, not a switch an operator flips.
SOLD_CURRENCIES: Final = ("EUR", "USD")

SCHEMA = """
CREATE TABLE IF NOT EXISTS prices (
    sku              TEXT NOT NULL,
    currency         TEXT NOT NULL,
    unit_price_cents INTEGER NOT NULL CHECK (unit_price_cents > 0),
    PRIMARY KEY (sku, currency)
);
"""

# What a new store starts with: the SKUs the demo, the CLI and the load tools sell.
CATALOGUE_PRICES: Final[dict[str, dict[str, int]]] = {
    "MUG-BLUE": {"EUR": 1250, "USD": 1350},
    "TEE-M": {"EUR": 2000, "USD": 2200},
    "POSTER-A2": {"EUR": 900, "USD": 1000},
    "LIMITED-PRINT": {"EUR": 4900, "USD": 5300},
    "VINYL-SOLDOUT": {"EUR": 3500, "USD": 3800},
}


def money(cents: int, currency: str) -> str:
    return f"{cents // 100}.{cents % 100:02d} {currency}"


def seed_prices(conn: sqlite3.Connection) -> None:
    """The catalogue's prices, into a new store only: a restart keeps what an admin set."""
    if conn.execute("SELECT COUNT(*) FROM prices").fetchone()[0] == 0:
        for sku, prices in CATALOGUE_PRICES.items():
            set_prices(conn, sku, prices)


def check_sold_currencies(prices: Mapping[str, int]) -> None:
    """An admin's price list must name exactly the currencies the shop sells in."""
    for currency in prices:
        if currency not in SOLD_CURRENCIES:
            raise ServiceFailure(
                422,
                "currency_not_sold",
                f"the shop does not sell in {currency}; it sells in {', '.join(SOLD_CURRENCIES)}",
                f"prices.{currency}",
            )
    for currency in SOLD_CURRENCIES:
        if currency not in prices:
            raise ServiceFailure(
                422,
                "price_missing",
                f"no price in {currency}: a SKU needs one in each currency the shop sells in",
                f"prices.{currency}",
            )


def set_prices(conn: sqlite3.Connection, sku: str, prices: Mapping[str, int]) -> None:
    """Replace the SKU's prices (call inside `db.write()`, after `check_sold_currencies`)."""
    conn.execute("DELETE FROM prices WHERE sku = ?", (sku,))
    conn.executemany(
        "INSERT INTO prices (sku, currency, unit_price_cents) VALUES (?, ?, ?)",
        [(sku, currency, cents) for currency, cents in prices.items()],
    )


def prices_of(conn: sqlite3.Connection, sku: str) -> SkuPrices | None:
    rows = conn.execute(
        "SELECT currency, unit_price_cents FROM prices WHERE sku = ? ORDER BY currency", (sku,)
    ).fetchall()
    if not rows:
        return None
    return SkuPrices(sku=sku, prices={row[0]: row[1] for row in rows})


def all_prices(conn: sqlite3.Connection) -> list[SkuPrices]:
    rows = conn.execute(
        "SELECT sku, currency, unit_price_cents FROM prices ORDER BY sku, currency"
    ).fetchall()
    by_sku: dict[str, dict[str, int]] = {}
    for sku, currency, cents in rows:
        by_sku.setdefault(sku, {})[currency] = cents
    return [SkuPrices(sku=sku, prices=prices) for sku, prices in by_sku.items()]


def price_order(conn: sqlite3.Connection, body: CreateOrder) -> tuple[list[OrderLine], int]:
    """The order's lines at today's prices, and its total; refuses (nothing written) a
    currency the shop does not sell in, an unknown SKU, a total beyond the bound, and a total
    other than the one the customer saw (`expected_total_cents`)."""
    if body.currency not in SOLD_CURRENCIES:
        raise ServiceFailure(
            422,
            "currency_not_sold",
            f"the shop does not sell in {body.currency}; it sells in {', '.join(SOLD_CURRENCIES)}",
            "currency",
        )
    lines = []
    for index, item in enumerate(body.lines):
        row = conn.execute(
            "SELECT unit_price_cents FROM prices WHERE sku = ? AND currency = ?",
            (item.sku, body.currency),
        ).fetchone()
        if row is None:
            raise ServiceFailure(
                422, "unknown_sku", f"the shop does not sell {item.sku!r}", f"lines.{index}.sku"
            )
        lines.append(OrderLine(sku=item.sku, quantity=item.quantity, unit_price_cents=row[0]))
    total = sum(line.quantity * line.unit_price_cents for line in lines)
    if total > MAX_ORDER_TOTAL_CENTS:
        # Also what keeps the charge of any order a valid amount.
        raise ServiceFailure(
            422,
            "order_too_large",
            f"the order's total {money(total, body.currency)} exceeds the limit of "
            f"{money(MAX_ORDER_TOTAL_CENTS, body.currency)}",
            "lines",
        )
    expected = body.expected_total_cents
    if expected is not None and expected != total:
        raise ServiceFailure(
            409,
            "price_changed",
            f"the total is now {money(total, body.currency)}, not {money(expected, body.currency)}",
            "expected_total_cents",
        )
    return lines, total
