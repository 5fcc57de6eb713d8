"""Structured logs: one JSON object a line, each carrying the order id and the workflow id.

`CheckoutContext` takes the workflow id from the context Temporal's `workflow.logger` and
`activity.logger` put in the record's extra (`temporal_workflow`, `temporal_activity`), or,
for any other logger (httpx, a traceback) called inside an activity or a workflow, from that
activity's or workflow's info. It derives the order id from it (`checkout-{order_id}`, and
`checkout-{order_id}:...` for the fan-out's jobs) and adds the trace and span ids of the
current span, so a log line leads to its trace.
"""

import logging
import re
import sys
from collections.abc import Mapping
from typing import TextIO

from opentelemetry import trace
from pythonjsonlogger.json import JsonFormatter
from temporalio import activity, workflow

from telemetry.settings import LogFormat, TelemetrySettings

# workflows.checkout.checkout_workflow_id, read backwards; order ids never contain ':'.
_CHECKOUT_ID = re.compile(r"checkout-(?P<order_id>[A-Za-z0-9][A-Za-z0-9_-]{0,63})(?::.*)?")
_TEMPORAL_EXTRAS = ("temporal_workflow", "temporal_activity")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(workflow_id)s] %(message)s"


def order_id_of(workflow_id: str | None) -> str | None:
    """The order a workflow belongs to: its checkout, or a job the checkout started."""
    if workflow_id is None:
        return None
    match = _CHECKOUT_ID.fullmatch(workflow_id)
    return match["order_id"] if match else None


class CheckoutContext(logging.Filter):
    """Adds `workflow_id`, `order_id`, `trace_id` and `span_id` to every record (None when
    the line belongs to no workflow or no span)."""

    def filter(self, record: logging.LogRecord) -> bool:
        workflow_id: str | None = None
        for key in _TEMPORAL_EXTRAS:
            details = getattr(record, key, None)
            if isinstance(details, Mapping) and details.get("workflow_id"):
                workflow_id = str(details["workflow_id"])
                break
        else:  # another logger (httpx, an exception) logging inside an activity or workflow
            if activity.in_activity():
                workflow_id = activity.info().workflow_id
            elif workflow.in_workflow():
                workflow_id = workflow.info().workflow_id
        record.workflow_id = workflow_id
        record.order_id = order_id_of(workflow_id)
        span = trace.get_current_span().get_span_context()
        record.trace_id = trace.format_trace_id(span.trace_id) if span.is_valid else None
        record.span_id = trace.format_span_id(span.span_id) if span.is_valid else None
        return True


def json_formatter() -> JsonFormatter:
    return JsonFormatter(
        "{levelname}{name}{message}{workflow_id}{order_id}{trace_id}{span_id}",
        style="{",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp="time",  # ISO 8601, UTC
    )


def log_handler(fmt: LogFormat = "json", stream: TextIO | None = None) -> logging.Handler:
    """A stream handler (stderr by default) that writes records with their checkout context."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(CheckoutContext())
    handler.setFormatter(json_formatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    return handler


def context_on_message(on: bool) -> None:
    """Whether Temporal's loggers append their context dict to each message (their default);
    off for JSON, where the context is in fields of its own."""
    workflow.logger.workflow_info_on_message = on
    activity.logger.activity_info_on_message = on


def configure_logging(settings: TelemetrySettings | None = None) -> None:
    """The root logger of this process, as the settings say (CHECKOUT_LOG_FORMAT/_LEVEL)."""
    settings = settings or TelemetrySettings()
    context_on_message(settings.log_format != "json")
    logging.basicConfig(
        level=settings.log_level.upper(), handlers=[log_handler(settings.log_format)], force=True
    )
