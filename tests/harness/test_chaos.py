"""Reliability under faults: a small `python -m harness.chaos` run loses nothing, and the
invariant checks it relies on do catch each kind of violation."""

import json
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.invariants import VIOLATIONS, StockLevels, check_invariants
from services.database import Database
from services.email.app import SCHEMA as EMAIL_SCHEMA
from services.inventory.app import SCHEMA as INVENTORY_SCHEMA
from services.orders.app import SCHEMA as ORDERS_SCHEMA
from services.payments.app import SCHEMA as PAYMENTS_SCHEMA
from services.warehouse.app import SCHEMA as WAREHOUSE_SCHEMA
from temporal_saga.models import Outcome
from tests.support.harness import run_harness


@pytest.mark.slow
def test_small_chaos_run_keeps_every_promise(tmp_path: Path) -> None:
    """40 checkouts while services fail, hang and slow down, a worker is SIGKILLed, a service
    and the Temporal server are killed and started again, an operator terminates checkouts
    at random points and resets finished ones, and one reconciler sweep settles what the
    terminated ones left open: every invariant holds."""
    done = run_harness(
        "harness.chaos",
        "--checkouts",
        "40",
        "--worker-kills",
        "1",
        "--service-restarts",
        "1",
        "--server-restarts",
        "1",
        "--terminations",
        "4",
        "--resets",
        "2",
        "--json",
        "--data-dir",
        str(tmp_path),
        timeout=280,
    )
    lines = done.stdout.strip().splitlines()
    assert lines, done.stderr[-3000:]
    figures = json.loads(lines[-1])
    assert figures["violations"] == dict.fromkeys(VIOLATIONS, 0), done.stderr[-3000:]
    assert figures["violations_total"] == 0
    assert done.returncode == 0, done.stderr[-3000:]
    assert figures["checkouts"] == 40
    # Every checkout answered, but those terminated before their decision.
    answered = figures["confirmed"] + figures["rejected"]
    assert 40 - figures["terminated"] <= answered <= 40
    assert 1 <= figures["terminated"] <= 4 and figures["resets"] == 2
    assert figures["repaired"] == figures["terminated"]  # each settled by the sweep
    # The seeded mix has good carts, declined cards and sold-out SKUs.
    assert figures["confirmed"] > 0
    assert figures["outcomes"].get("REJECTED:card_declined", 0) > 0
    assert figures["outcomes"].get("REJECTED:out_of_stock", 0) > 0
    assert (figures["worker_kills"], figures["service_restarts"]) == (1, 1)
    assert figures["server_restarts"] == 1
    assert figures["faults"]["errors"] > 0 and figures["faults"]["delays"] > 0
    assert figures["dead_letters"] == figures["redriven"]
    # Every process the run started has stopped.
    pids = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True)
    assert pids.stdout.strip() == "", f"left running: {pids.stdout}"


# -- the checks themselves -----------------------------------------------------------------

STOCK_BEFORE = {"SKU-A": StockLevels(available=10, reserved=0, committed=0)}
LINES_A2 = '[{"sku": "SKU-A", "quantity": 2, "unit_price_cents": 500}]'
LINES_A1 = '[{"sku": "SKU-A", "quantity": 1, "unit_price_cents": 500}]'


def _world(data_dir: Path) -> None:
    """Two orders that kept every promise: o1 confirmed (charged, stock committed, one
    receipt, one shipment), o2 rejected (refunded, stock released, nothing sent)."""
    for file, schema in (
        ("orders.sqlite", ORDERS_SCHEMA),
        ("inventory.sqlite", INVENTORY_SCHEMA),
        ("payments.sqlite", PAYMENTS_SCHEMA),
        ("email.sqlite", EMAIL_SCHEMA),
        ("warehouse.sqlite", WAREHOUSE_SCHEMA),
    ):
        Database(str(data_dir / file)).init(schema)
    _sql(
        data_dir,
        "orders",
        "INSERT INTO orders VALUES ('o1', 'h', 'c', 'EUR', ?, 1000, 'CONFIRMED', NULL, 't')",
        LINES_A2,
    )
    _sql(
        data_dir,
        "orders",
        "INSERT INTO orders VALUES ('o2', 'h', 'c', 'EUR', ?, 500, 'CANCELLED', 'declined', 't')",
        LINES_A1,
    )
    _sql(data_dir, "inventory", "INSERT INTO stock VALUES ('SKU-A', 'A', 8, 0, 2)")
    _sql(
        data_dir,
        "inventory",
        "INSERT INTO reservations VALUES ('r1', 'h', 'o1', ?, 'COMMITTED', NULL, 't')",
        '[{"sku": "SKU-A", "quantity": 2}]',
    )
    _sql(
        data_dir,
        "inventory",
        "INSERT INTO reservations VALUES ('r2', 'h', 'o2', ?, 'RELEASED', NULL, 't')",
        '[{"sku": "SKU-A", "quantity": 1}]',
    )
    _sql(
        data_dir,
        "payments",
        "INSERT INTO charges VALUES ('c1', 'h', 'o1', 1000, 'EUR', '4242', 'SUCCEEDED', NULL, 't')",
    )
    _sql(
        data_dir,
        "payments",
        "INSERT INTO charges VALUES ('c2', 'h', 'o2', 500, 'EUR', '4242', 'REFUNDED', 'x', 't')",
    )
    _sql(data_dir, "email", "INSERT INTO emails VALUES ('e1', 'h', 'o1', 'a@b.c', 's', 'b', 't')")
    _sql(
        data_dir,
        "warehouse",
        "INSERT INTO shipments VALUES ('o1', 'ev1', 'h', 'c', '[]', 'CREATED', 't')",
    )


def _sql(data_dir: Path, service: str, statement: str, *params: str) -> None:
    conn = sqlite3.connect(data_dir / f"{service}.sqlite")
    try:
        with conn:
            conn.execute(statement, params)
    finally:
        conn.close()


ANSWERS: dict[str, Outcome | None] = {
    "o1": Outcome.CONFIRMED,
    "o2": Outcome.REJECTED,
}


def test_a_world_that_kept_its_promises_has_no_violation(tmp_path: Path) -> None:
    _world(tmp_path)
    report = check_invariants(tmp_path, STOCK_BEFORE, ANSWERS)
    assert report.violations == dict.fromkeys(VIOLATIONS, 0), report.examples


Tamper = Callable[[Path], None]

BROKEN: dict[str, Tamper] = {
    "double_charge": lambda d: _sql(
        d,
        "payments",
        "INSERT INTO charges VALUES ('c3', 'h', 'o1', 1000, 'EUR', '4242', 'REFUNDED', 'x', 't')",
    ),
    # A refunded charge of another amount than its order's: no net charge is wrong, the
    # charge itself was.
    "charge_not_order_price": lambda d: _sql(
        d, "payments", "UPDATE charges SET amount_cents = 400 WHERE charge_id = 'c2'"
    ),
    "confirmed_net_charge_wrong": lambda d: _sql(
        d, "payments", "UPDATE charges SET amount_cents = 900 WHERE charge_id = 'c1'"
    ),
    "unconfirmed_net_charge": lambda d: _sql(
        d, "payments", "UPDATE charges SET status = 'SUCCEEDED' WHERE charge_id = 'c2'"
    ),
    "stock_not_conserved": lambda d: _sql(d, "inventory", "UPDATE stock SET available = 7"),
    "open_reservations": lambda d: _sql(
        d,
        "inventory",
        "INSERT INTO reservations VALUES ('r9', 'h', NULL, '[]', 'RESERVED', NULL, 't')",
    ),
    "stock_order_mismatch": lambda d: _sql(
        d, "inventory", "UPDATE reservations SET status = 'COMMITTED' WHERE reservation_id = 'r2'"
    ),
    "receipts_not_one": lambda d: _sql(
        d, "email", "INSERT INTO emails VALUES ('e2', 'h', 'o1', 'a@b.c', 's', 'b', 't')"
    ),
    "shipments_not_one": lambda d: _sql(d, "warehouse", "DELETE FROM shipments"),
    "orders_pending": lambda d: _sql(
        d, "orders", "UPDATE orders SET status = 'PENDING' WHERE order_id = 'o2'"
    ),
}


@pytest.mark.parametrize("violation", sorted(BROKEN))
def test_each_broken_promise_is_caught(tmp_path: Path, violation: str) -> None:
    _world(tmp_path)
    BROKEN[violation](tmp_path)
    report = check_invariants(tmp_path, STOCK_BEFORE, ANSWERS)
    assert report.violations[violation] >= 1, report.violations
    assert report.examples[violation]


def test_answers_that_disagree_are_caught(tmp_path: Path) -> None:
    _world(tmp_path)
    wrong = check_invariants(tmp_path, STOCK_BEFORE, {**ANSWERS, "o2": Outcome.CONFIRMED})
    assert wrong.violations["answer_mismatch"] == 1
    missing = check_invariants(tmp_path, STOCK_BEFORE, {**ANSWERS, "o2": None})
    assert missing.violations["no_answer"] == 1
    running = check_invariants(tmp_path, STOCK_BEFORE, ANSWERS, not_closed=["o2"])
    assert running.violations["not_closed"] == 1
    changed = check_invariants(tmp_path, STOCK_BEFORE, ANSWERS, final={"o1": Outcome.REJECTED})
    assert changed.violations["answer_mismatch"] == 1
