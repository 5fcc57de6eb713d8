"""The checkout's promises, checked against each service's own storage.

Read-only: every SQLite file is opened with `mode=ro`, so a check never changes what it
checks. `check_invariants` counts the violations of each promise for the orders of one run:

- payments: no order charged twice; every charge (refunded, declined or kept) is of the
  price stored on its order: the order's total, in the order's currency; the net charge of
  every CONFIRMED order equals its total; no net charge for an order that is not CONFIRMED;
- stock: per SKU, the stock at the start minus what the run's COMMITTED reservations took
  equals the stock now, nothing is left reserved, no reservation is left open, and stock was
  committed for exactly the CONFIRMED orders;
- fan-out: exactly one receipt email and one shipment per CONFIRMED order, none for others;
- answers: every checkout has an answer, is closed, and its answer is what the orders
  service holds (no order left PENDING).
"""

import json
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from temporal_saga.models import Outcome

# Every violation counter, in the order they are printed.
VIOLATIONS = (
    "double_charge",
    "charge_not_order_price",
    "confirmed_net_charge_wrong",
    "unconfirmed_net_charge",
    "stock_not_conserved",
    "open_reservations",
    "stock_order_mismatch",
    "receipts_not_one",
    "shipments_not_one",
    "orders_pending",
    "answer_mismatch",
    "no_answer",
    "not_closed",
)


@dataclass(frozen=True)
class StockLevels:
    available: int
    reserved: int
    committed: int


@dataclass
class InvariantReport:
    violations: dict[str, int] = field(default_factory=lambda: dict.fromkeys(VIOLATIONS, 0))
    # A few examples per violation, to start looking from.
    examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def add(self, name: str, example: str) -> None:
        self.violations[name] += 1
        if len(self.examples[name]) < 5:
            self.examples[name].append(example)

    @property
    def total(self) -> int:
        return sum(self.violations.values())


@contextmanager
def read_only(path: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    conn.row_factory = sqlite3.Row
    try:
        yield conn
    finally:
        conn.close()


def read_stock(data_dir: Path) -> dict[str, StockLevels]:
    with read_only(data_dir / "inventory.sqlite") as conn:
        rows = conn.execute("SELECT sku, available, reserved, committed FROM stock").fetchall()
    return {
        row["sku"]: StockLevels(row["available"], row["reserved"], row["committed"]) for row in rows
    }


def _placeholders(ids: list[str]) -> str:
    return ",".join("?" * len(ids))


def check_invariants(
    data_dir: Path,
    stock_before: Mapping[str, StockLevels],
    answers: Mapping[str, Outcome | None],
    not_closed: Iterable[str] = (),
    final: Mapping[str, Outcome] | None = None,
    terminated: Iterable[str] = (),
) -> InvariantReport:
    """`answers`: each order of the run and the answer its customer got (None: none);
    `not_closed`: orders whose checkout did not end with a result (still running, failed);
    `final`: each closed checkout's result status (must agree with the answer), a
    terminated one's the outcome of its repair; `terminated`: orders whose checkout an
    operator terminated: no answer is owed (it may have been killed first), but an answer
    given must still agree with the order."""
    report = InvariantReport()
    ids = sorted(answers)
    with read_only(data_dir / "orders.sqlite") as conn:
        orders = {
            row["order_id"]: row
            for row in conn.execute(
                f"SELECT order_id, status, currency, total_cents, lines FROM orders"
                f" WHERE order_id IN ({_placeholders(ids)})",
                ids,
            )
        }
    confirmed = {i for i in ids if i in orders and orders[i]["status"] == "CONFIRMED"}
    _check_answers(
        report, ids, orders, confirmed, answers, set(not_closed), final or {}, set(terminated)
    )
    _check_payments(report, data_dir, ids, orders, confirmed)
    _check_stock(report, data_dir, ids, orders, confirmed, stock_before)
    _check_fanout(report, data_dir, ids, confirmed)
    return report


def _check_answers(
    report: InvariantReport,
    ids: list[str],
    orders: Mapping[str, sqlite3.Row],
    confirmed: set[str],
    answers: Mapping[str, Outcome | None],
    not_closed: set[str],
    final: Mapping[str, Outcome],
    terminated: set[str],
) -> None:
    for order_id in ids:
        answer = answers[order_id]
        if answer is None:
            if order_id not in terminated:
                report.add("no_answer", order_id)
        elif (answer is Outcome.CONFIRMED) != (order_id in confirmed):
            status = orders[order_id]["status"] if order_id in orders else "absent"
            report.add("answer_mismatch", f"{order_id}: answered {answer}, order {status}")
        elif order_id in final and final[order_id] is not answer:
            report.add("answer_mismatch", f"{order_id}: answered {answer}, ended {final[order_id]}")
        if order_id in not_closed:
            report.add("not_closed", order_id)
        if order_id in orders and orders[order_id]["status"] == "PENDING":
            report.add("orders_pending", order_id)


def _check_payments(
    report: InvariantReport,
    data_dir: Path,
    ids: list[str],
    orders: Mapping[str, sqlite3.Row],
    confirmed: set[str],
) -> None:
    with read_only(data_dir / "payments.sqlite") as conn:
        rows = conn.execute(
            f"SELECT charge_id, order_id, amount_cents, currency, status FROM charges"
            f" WHERE order_id IN ({_placeholders(ids)})",
            ids,
        ).fetchall()
    taken: Counter[str] = Counter()  # charges that took money, refunded or not
    net: Counter[str] = Counter()
    for row in rows:
        # A charge is only ever made for a priced order, of what the orders service stored.
        order = orders.get(row["order_id"])
        charged = (row["amount_cents"], row["currency"])
        if order is None or charged != (order["total_cents"], order["currency"]):
            stored = "no order" if order is None else f"{order['total_cents']} {order['currency']}"
            report.add(
                "charge_not_order_price",
                f"{row['charge_id']}: {charged[0]} {charged[1]}, order {stored}",
            )
        if row["status"] in ("SUCCEEDED", "REFUNDED"):
            taken[row["order_id"]] += 1
        if row["status"] == "SUCCEEDED":
            net[row["order_id"]] += row["amount_cents"]
    for order_id in ids:
        if taken[order_id] > 1:
            report.add("double_charge", f"{order_id}: {taken[order_id]} charges")
        if order_id in confirmed:
            total = orders[order_id]["total_cents"]
            if net[order_id] != total:
                report.add("confirmed_net_charge_wrong", f"{order_id}: {net[order_id]} != {total}")
        elif net[order_id] != 0:
            report.add("unconfirmed_net_charge", f"{order_id}: {net[order_id]} cents")


def _check_stock(
    report: InvariantReport,
    data_dir: Path,
    ids: list[str],
    orders: Mapping[str, sqlite3.Row],
    confirmed: set[str],
    stock_before: Mapping[str, StockLevels],
) -> None:
    with read_only(data_dir / "inventory.sqlite") as conn:
        reservations = conn.execute(
            f"SELECT reservation_id, order_id, lines, status FROM reservations"
            f" WHERE order_id IN ({_placeholders(ids)})",
            ids,
        ).fetchall()
        # Any reservation at all still holding stock, also one not tied to an order.
        open_rows = conn.execute(
            "SELECT reservation_id FROM reservations WHERE status = 'RESERVED'"
        ).fetchall()
    stock_now = read_stock(data_dir)
    taken: Counter[str] = Counter()
    committed_for: dict[str, Counter[str]] = {}
    for row in reservations:
        if row["status"] != "COMMITTED":
            continue
        lines: Counter[str] = Counter()
        for line in json.loads(row["lines"]):
            lines[line["sku"]] += line["quantity"]
            taken[line["sku"]] += line["quantity"]
        if row["order_id"] in committed_for:
            report.add("stock_order_mismatch", f"{row['order_id']}: committed twice")
        committed_for[row["order_id"]] = lines
    for row in open_rows:
        report.add("open_reservations", row["reservation_id"])
    for sku, before in stock_before.items():
        now = stock_now.get(sku, StockLevels(0, 0, 0))
        expected = before.available - taken[sku]
        if now.available != expected or now.reserved != before.reserved:
            report.add(
                "stock_not_conserved",
                f"{sku}: available {now.available} (expected {expected}), reserved {now.reserved}",
            )
    for order_id in ids:
        committed = committed_for.get(order_id)
        if order_id in confirmed:
            ordered: Counter[str] = Counter()
            for line in json.loads(orders[order_id]["lines"]):
                ordered[line["sku"]] += line["quantity"]
            if committed != ordered:
                report.add("stock_order_mismatch", f"{order_id}: confirmed, committed {committed}")
        elif committed is not None:
            report.add("stock_order_mismatch", f"{order_id}: not confirmed, stock committed")


def _check_fanout(
    report: InvariantReport, data_dir: Path, ids: list[str], confirmed: set[str]
) -> None:
    for name, file, table in (
        ("receipts_not_one", "email.sqlite", "emails"),
        ("shipments_not_one", "warehouse.sqlite", "shipments"),
    ):
        with read_only(data_dir / file) as conn:
            counts = Counter(
                row["order_id"]
                for row in conn.execute(
                    f"SELECT order_id FROM {table} WHERE order_id IN ({_placeholders(ids)})",
                    ids,
                )
            )
        for order_id in ids:
            expected = 1 if order_id in confirmed else 0
            if counts[order_id] != expected:
                report.add(name, f"{order_id}: {counts[order_id]} (expected {expected})")
