"""`checkout-saga demo --once`: the README's main command, as a new user runs it."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

# Starts a whole stack of its own.
pytestmark = pytest.mark.slow


def test_demo_once_runs_the_mix_and_stops_everything(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "checkout-saga"
    done = subprocess.run(
        [str(script), "demo", "--once", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    checkouts, fanout = out.split("Fan-out (after the answer)")
    assert checkouts.count("CONFIRMED") == 3
    # Out of stock, card declined, and a cart showing an old price (refused at create).
    assert checkouts.count("REJECTED") == 3
    # The fan-out: one receipt, one shipment, points and an analytics record per confirmed
    # order; only the analytics record for a rejected one.
    confirmed = r"│ CONFIRMED\s+│ 1\s+│ 1\s+│ [1-9]\d*\s+│ OrderConfirmed\s+│"
    rejected = r"│ REJECTED\s+│ 0\s+│ 0\s+│ 0\s+│ OrderRejected\s+│"
    assert len(re.findall(confirmed, fanout)) == 3, fanout
    assert len(re.findall(rejected, fanout)) == 3, fanout
    assert "INVALID" in out and "items.0.quantity" in out
    # Compensations are shown for the rejected ones: the declined card undid everything.
    assert "refund_payment → release_stock → cancel_order" in out
    assert "│ release_stock → cancel_order" in out
    assert "Temporal Web UI: http://127.0.0.1:" in out
    # The dev codec server takes no credential (the dev UI cannot send one), and says so.
    said = " ".join(out.split())  # as one line, however rich wrapped it
    assert re.search(r"Codec server http://127\.0\.0\.1:\d+ \(loopback only; CORS for", said)
    assert "NO CREDENTIAL: anyone on this machine can decrypt" in said
    # Every process the demo started has stopped.
    pids = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True)
    assert pids.stdout.strip() == "", f"left running: {pids.stdout}"
    assert (tmp_path / "temporal.sqlite").exists()
    assert {p.name for p in tmp_path.glob("*.sqlite")} >= {
        "orders.sqlite",
        "inventory.sqlite",
        "payments.sqlite",
    }
    assert os.path.getsize(tmp_path / "payments.sqlite") > 0
