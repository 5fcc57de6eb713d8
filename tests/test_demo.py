"""`checkout-saga demo --once`: the README's main command, as a new user runs it."""

import os
import subprocess
import sys
from pathlib import Path


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
    assert out.count("CONFIRMED") == 3
    assert out.count("REJECTED") == 2
    assert "INVALID" in out and "items.0.quantity" in out
    # Compensations are shown for the rejected ones: the declined card undid everything.
    assert "refund_payment → release_stock → cancel_order" in out
    assert "│ release_stock → cancel_order" in out
    assert "Temporal Web UI: http://127.0.0.1:" in out
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
