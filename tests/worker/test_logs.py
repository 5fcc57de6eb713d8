"""The log format: JSON lines with the order id and workflow id taken from Temporal's context.

The end-to-end check (a real checkout's lines, with their trace ids) is in
tests/e2e/test_tracing.py.
"""

import dataclasses
import io
import json
import logging

import pytest
from temporalio.testing import ActivityEnvironment

from models.checkout import checkout_workflow_id
from telemetry.logs import CheckoutContext, log_handler, order_id_of


@pytest.mark.parametrize(
    ("workflow_id", "order_id"),
    [
        (checkout_workflow_id("o-1_A"), "o-1_A"),
        (f"{checkout_workflow_id('o2')}:OrderConfirmed:receipt", "o2"),
        (f"{checkout_workflow_id('o3')}:OrderConfirmed:shipping:redrive-1", "o3"),
        ("loyalty-customer-7", None),
        ("analytics-3", None),
        ("checkout-", None),
        (None, None),
    ],
)
def test_order_id_of_a_workflow(workflow_id: str | None, order_id: str | None) -> None:
    assert order_id_of(workflow_id) == order_id


def record(**extra: object) -> logging.LogRecord:
    rec = logging.LogRecord(
        "temporalio.activity", logging.INFO, __file__, 1, "hello %s", ("x",), None
    )
    rec.__dict__.update(extra)
    return rec


def test_json_line_has_the_context_fields() -> None:
    stream = io.StringIO()
    handler = log_handler("json", stream)
    details = {"workflow_id": "checkout-o9", "activity_type": "charge_payment", "attempt": 2}
    handler.handle(record(temporal_activity=details))
    handler.handle(record())  # a line of no workflow
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "hello x"
    assert first["level"] == "INFO" and first["logger"] == "temporalio.activity"
    assert (first["workflow_id"], first["order_id"]) == ("checkout-o9", "o9")
    assert first["temporal_activity"]["activity_type"] == "charge_payment"
    assert first["trace_id"] is None  # no span here
    assert "time" in first
    assert (second["workflow_id"], second["order_id"]) == (None, None)


def test_workflow_context_and_text_format() -> None:
    rec = record(temporal_workflow={"workflow_id": "checkout-o5", "run_id": "r"})
    assert CheckoutContext().filter(rec)
    assert (getattr(rec, "workflow_id", None), getattr(rec, "order_id", None)) == (
        "checkout-o5",
        "o5",
    )
    stream = io.StringIO()
    log_handler("text", stream).handle(record(temporal_workflow={"workflow_id": "checkout-o5"}))
    assert stream.getvalue().rstrip().endswith("temporalio.activity [checkout-o5] hello x")


def test_any_logger_inside_an_activity_gets_its_workflow() -> None:
    stream = io.StringIO()
    handler = log_handler("json", stream)

    def log_from_a_library() -> None:
        handler.handle(logging.LogRecord("httpx", logging.INFO, __file__, 1, "GET /", (), None))

    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, workflow_id="checkout-o7:OrderConfirmed:receipt")
    env.run(log_from_a_library)
    line = json.loads(stream.getvalue())
    assert (line["logger"], line["workflow_id"], line["order_id"]) == (
        "httpx",
        "checkout-o7:OrderConfirmed:receipt",
        "o7",
    )
