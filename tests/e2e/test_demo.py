"""`checkout-saga demo --once`: the README's main command, as a new user runs it; and the
example trip booked from another shell while the demo's stack runs."""

import json
import os
import re
import shlex
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from stack.launcher import running_stack, write_env_file

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


def _sourced(env_file: Path) -> dict[str, str]:
    """What `source stack.env` exports."""
    exported = {}
    for line in env_file.read_text().splitlines():
        [assignment] = shlex.split(line.removeprefix("export "))
        name, _, value = assignment.partition("=")
        exported[name] = value
    return exported


def test_the_trip_from_another_shell_while_the_stack_runs(tmp_path: Path) -> None:
    """The README's trip: with the demo's stack up (its trip worker among its parts), a shell
    that sourced stack.env books a declined trip whose car cancellation gets stuck, finds it
    with `checkout-saga attention list` and retries it; the bookings are undone."""
    cli = Path(sys.executable).parent / "checkout-saga"
    trip_id = f"demo-{uuid.uuid4().hex[:8]}"
    workflow_id = f"trip-{trip_id}"
    with running_stack(tmp_path, ui=False) as stack:
        assert "trip-worker" in {proc.name for proc in stack.processes}
        shell = {**os.environ, **_sourced(write_env_file(stack))}

        def run(*args: str | Path) -> str:
            done = subprocess.run(
                [str(arg) for arg in args],
                env=shell,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert done.returncode == 0, f"{args}: {done.stdout}{done.stderr}"
            return done.stdout

        book = [sys.executable, "-m", "examples.trip", "book", "--trip-id", trip_id]
        answer = json.loads(run(*book, "--declined", "--cancel-failures", "cancel_car:5"))
        assert (answer["status"], answer["reason_code"]) == ("REJECTED", "payment_declined")
        listed = ""
        for _ in range(60):  # three tries, then visibility: a few seconds
            listed = run(cli, "attention", "list", "--json")
            if workflow_id in listed:
                break
            time.sleep(0.5)
        [row] = [json.loads(line) for line in listed.splitlines() if workflow_id in line]
        assert (row["workflow_type"], row["stuck"]) == ("TripBooking", ["cancel_car"])
        retried = run(cli, "attention", "retry", "--workflow-id", workflow_id)
        assert f"{workflow_id}: retrying cancel_car" in retried
        status: dict[str, Any] = {}
        for _ in range(60):  # the retried round's tries: a few seconds
            status = json.loads(run(cli, "status", "--workflow-id", workflow_id))
            if status["status"] == "REJECTED":
                break
            time.sleep(0.5)
        assert [(c["name"], c["state"]) for c in status["compensations"]] == [
            ("cancel_car", "DONE"),
            ("cancel_hotel", "DONE"),
            ("cancel_flight", "DONE"),
        ], status
