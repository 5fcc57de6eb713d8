"""`checkout-saga describe TYPE`: the real console script prints a saga's shape from its class
(no Temporal server), among the checkout app's sagas or in the module given; an unknown type
or a module that does not import is refused with exit code 2 and says why."""

import os
import subprocess
import sys

from examples.trip.workflow import TripBookingWorkflow
from temporal_saga.shape import describe, mermaid
from workflows.checkout import CheckoutWorkflow


def describe_cli(*args: str) -> subprocess.CompletedProcess[str]:
    script = os.path.join(os.path.dirname(sys.executable), "checkout-saga")
    return subprocess.run(
        [script, "describe", *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_describe_the_checkout() -> None:
    done = describe_cli("Checkout")
    assert done.returncode == 0, done.stderr
    assert done.stdout == describe(CheckoutWorkflow)
    assert "  4. confirm_order: activity confirm_order, PIVOT, local first\n" in done.stdout


def test_describe_the_trip_from_its_module_as_mermaid() -> None:
    done = describe_cli("TripBooking", "--module", "examples.trip.workflow", "--mermaid")
    assert done.returncode == 0, done.stderr
    assert done.stdout == mermaid(TripBookingWorkflow)
    assert done.stdout.startswith("flowchart TD\n")


def test_an_unknown_type_names_the_types_it_knows() -> None:
    done = describe_cli("TripBooking")  # not one of the checkout app's sagas
    assert done.returncode == 2
    assert "no saga type 'TripBooking' in the checkout app's sagas (workflows/)" in done.stderr
    assert "its saga types: Checkout" in done.stderr
    done = describe_cli("Checkout", "--module", "examples.trip.workflow")
    assert done.returncode == 2
    assert "its saga types: TripBooking" in done.stderr


def test_a_module_that_does_not_import() -> None:
    done = describe_cli("TripBooking", "--module", "examples.no_such_module")
    assert done.returncode == 2
    assert "cannot import examples.no_such_module: ModuleNotFoundError" in done.stderr
