"""One checkout is one trace: starter -> workflow -> activities -> httpx -> services.

Everything runs in this process so every span lands in one in-memory exporter: a Temporal
dev server of its own (so the fan-out's long-lived workflows start in this trace too), the
eight services as uvicorn servers in threads, each with its own tracer provider (its own
`service.name`) and the FastAPI instrumentation, and the real worker on a client traced as
`python -m worker` traces it. The checkout is started by a second traced client, the starter,
with a card of its own tokenized first: no span or log line carries the card's number.
"""

import asyncio
import io
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, format_trace_id
from temporalio.testing import WorkflowEnvironment

from models.checkout import SEARCH_ATTRIBUTES, CartItem, CheckoutRequest, checkout_workflow_id
from services.analytics.app import create_app as analytics_app
from services.auth import (
    PUBLISHABLE_KEY_HEADER,
    SERVICE_TOKEN_ENV,
    bearer_headers,
    headers_from_env,
    new_token,
    publishable_key_from_env,
    publishable_key_headers,
)
from services.deadletters.app import create_app as deadletters_app
from services.email.app import create_app as email_app
from services.inventory.app import create_app as inventory_app
from services.loyalty.app import create_app as loyalty_app
from services.orders.app import create_app as orders_app
from services.payments.app import create_app as payments_app
from services.telemetry import instrument_service_app, service_name
from services.warehouse.app import create_app as warehouse_app
from stack.launcher import free_port, venv_binary, worker_env
from starter.checkouts import decide_checkout
from starter.payment_methods import tokenize_card_sync
from telemetry.logs import context_on_message, log_handler
from telemetry.settings import TelemetrySettings
from telemetry.tracing import span_exporter
from temporal_saga.models import Outcome
from tests.support.card_numbers import find_card_numbers
from tests.support.cards import random_card
from worker.clients import connect_temporal, service_clients
from worker.runner import checkout_workers
from worker.settings import Settings

TASK_QUEUE = "checkout-tracing"
CHECKOUT_SERVICES = {"orders", "inventory", "payments"}
# Reached after the decision: the receipt and shipment jobs, the loyalty and analytics reactions.
FANOUT_SERVICES = {"email", "warehouse", "loyalty", "analytics"}
SPANS_TIMEOUT_SECONDS = 30.0
APPS: dict[str, Callable[[str], FastAPI]] = {
    "orders": orders_app,
    "inventory": inventory_app,
    "payments": payments_app,
    "email": email_app,
    "warehouse": warehouse_app,
    "analytics": analytics_app,
    "loyalty": loyalty_app,
    "deadletters": deadletters_app,
}


class ThreadedService:
    """A service app on uvicorn in a thread of this process, on a free loopback port."""

    def __init__(self, app: FastAPI) -> None:
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"service on port {self.port} did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def provider_for(name: str, exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


@pytest.fixture(scope="module")
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture(scope="module")
def traced_services(
    exporter: InMemorySpanExporter, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[dict[str, str], str]]:
    """The eight services, each traced as `observe_service` traces a service process."""
    data_dir = tmp_path_factory.mktemp("traced-services")
    token = new_token()
    started: dict[str, ThreadedService] = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(SERVICE_TOKEN_ENV, token)  # the apps read their token when made
        try:
            for name, create_app in APPS.items():
                app = create_app(str(data_dir / f"{name}.sqlite"))
                assert service_name(app) == name
                instrument_service_app(app, provider_for(name, exporter))
                started[name] = ThreadedService(app)
                started[name].start()
            yield {name: server.url for name, server in started.items()}, token
        finally:
            for server in started.values():
                server.stop()


@dataclass
class Traced:
    order_id: str
    status: Outcome
    spans: list[ReadableSpan]
    log_lines: list[dict[str, object]]
    # The card tokenized for the checkout, and every log line of this process meanwhile.
    card: str = ""
    tokenizing_logs: str = ""

    def run_of(self, order_id: str) -> ReadableSpan | None:
        """The RunWorkflow span of a checkout."""
        wanted = checkout_workflow_id(order_id)
        runs = [
            s
            for s in self.spans
            if s.name == "RunWorkflow:Checkout"
            and s.attributes
            and s.attributes.get("temporalWorkflowID") == wanted
        ]
        assert len(runs) <= 1, order_id
        return runs[0] if runs else None

    def trace_id_of(self, order_id: str) -> int:
        run = self.run_of(order_id)
        assert run is not None, f"no RunWorkflow span for {order_id}"
        trace_id: int = run.context.trace_id
        return trace_id

    def in_trace(self, trace_id: int) -> list[ReadableSpan]:
        return [s for s in self.spans if s.context.trace_id == trace_id]


def services_reached(spans: Sequence[ReadableSpan]) -> set[str]:
    return {
        str(span.resource.attributes[SERVICE_NAME])
        for span in spans
        if span.kind is SpanKind.SERVER and span.name.startswith(("GET", "POST", "PUT"))
    }


@pytest.fixture(scope="module")
async def traced_checkout(
    exporter: InMemorySpanExporter,
    traced_services: tuple[dict[str, str], str],
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Traced]:
    urls, token = traced_services
    settings = Settings.model_validate(
        {"task_queue": TASK_QUEUE, "service_token": token}
        | {f"{name}_url": url for name, url in urls.items()}
    )
    worker_tracing = provider_for("checkout-worker", exporter)
    starter_tracing = provider_for("checkout-starter", exporter)
    logs = io.StringIO()
    handler = log_handler("json", logs)
    temporal_logger = logging.getLogger("temporalio")
    level = temporal_logger.level
    async with await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(venv_binary("temporal")),
        ui=False,
        dev_server_log_level="warn",
        search_attributes=SEARCH_ATTRIBUTES,
    ) as env:
        env_vars = worker_env(
            tmp_path_factory.mktemp("tracing"), env.client.service_client.config.target_host, {}
        )
        worker_client = await connect_temporal(env_vars, tracer_provider=worker_tracing)
        starter = await connect_temporal(env_vars, tracer_provider=starter_tracing)
        card = random_card("4")
        payment_token, tokenizing_logs = await asyncio.to_thread(
            tokenize_and_refuse, urls, token, card
        )
        request = new_request(payment_token)
        temporal_logger.addHandler(handler)
        temporal_logger.setLevel(logging.INFO)
        context_on_message(False)  # as configure_logging() does for JSON
        try:
            async with (
                service_clients(settings, worker_tracing) as clients,
                checkout_workers(worker_client, settings, clients),
            ):
                decision, handle = await decide_checkout(starter, request, TASK_QUEUE)
                await handle.result()
                # The fan-out's jobs and reactions go on after the checkout: wait for them.
                await wait_for_fanout(exporter, request.order_id)
        finally:
            context_on_message(True)
            temporal_logger.removeHandler(handler)
            temporal_logger.setLevel(level)
    lines = [json.loads(line) for line in logs.getvalue().splitlines() if line.strip()]
    spans = list(exporter.get_finished_spans())
    yield Traced(request.order_id, decision.status, spans, lines, card, tokenizing_logs)


def tokenize_and_refuse(urls: dict[str, str], service_token: str, card: str) -> tuple[str, str]:
    """As a front end: the card tokenized; and the ways a number can be sent wrongly (a typo,
    no key, a charge by number), each refused. Returns the token and this process's log lines
    (every logger, DEBUG) while it happened."""
    logs = io.StringIO()
    handler = log_handler("json", logs)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        token = tokenize_card_sync(urls["payments"], publishable_key_from_env(), card).token
        url = urls["payments"]
        typo = card[:-1] + str((int(card[-1]) + 1) % 10)
        key = publishable_key_headers(publishable_key_from_env())
        refused = [
            httpx.post(f"{url}/payment-methods", json={"card_number": typo}, headers=key),
            httpx.post(f"{url}/payment-methods", json={"card_number": card}),
            httpx.post(
                f"{url}/charges",
                json={
                    "charge_id": "traced-by-number",
                    "order_id": "traced-by-number",
                    "amount_cents": 100,
                    "currency": "EUR",
                    "payment_token": card,
                },
                headers=bearer_headers(service_token),
            ),
        ]
        assert [r.status_code for r in refused] == [422, 401, 422], [r.text for r in refused]
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    return token, logs.getvalue()


def new_request(payment_token: str) -> CheckoutRequest:
    return CheckoutRequest(
        order_id=f"traced-{uuid.uuid4().hex[:10]}",
        customer_id=f"traced-{uuid.uuid4().hex[:6]}",  # its own CustomerLoyalty workflow
        email="traced@example.com",
        payment_token=payment_token,
        items=[CartItem(sku="MUG-BLUE", quantity=1)],
    )


async def wait_for_fanout(exporter: InMemorySpanExporter, order_id: str) -> None:
    """Until the calls of the receipt, shipment, loyalty and analytics are in its trace."""
    deadline = time.monotonic() + SPANS_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        traced = Traced(order_id, Outcome.CONFIRMED, list(exporter.get_finished_spans()), [])
        run = traced.run_of(order_id)
        if run is not None:
            reached = services_reached(traced.in_trace(run.context.trace_id))
            if reached >= FANOUT_SERVICES:
                return
        await asyncio.sleep(0.2)


async def test_one_checkout_is_one_trace(traced_checkout: Traced) -> None:
    assert traced_checkout.status is Outcome.CONFIRMED
    starts = [s for s in traced_checkout.spans if s.name.startswith("StartUpdateWithStart")]
    assert len(starts) == 1 and starts[0].resource.attributes[SERVICE_NAME] == "checkout-starter"
    trace_id = starts[0].context.trace_id
    assert traced_checkout.trace_id_of(traced_checkout.order_id) == trace_id
    outside = {
        (s.resource.attributes[SERVICE_NAME], s.name)
        for s in traced_checkout.spans
        if s.context.trace_id != trace_id
    }
    # Only the front end's calls before the checkout (tokenizing the card, and the refused
    # attempts of tokenize_and_refuse): requests of their own, traces of their own.
    before = {("payments", "POST /payment-methods"), ("payments", "POST /charges")}
    assert outside == before, "spans outside the checkout's trace"
    spans = traced_checkout.spans

    names = {s.name for s in spans}
    for step in ("create_order", "reserve_stock", "charge_payment", "confirm_order"):
        assert {f"StartActivity:{step}", f"RunActivity:{step}"} <= names, step
    assert {"RunWorkflow:Checkout", "HandleUpdate:decision", "RunActivity:commit_stock"} <= names
    # The fan-out: jobs as children, reactions signalled with start from an activity.
    assert {"StartChildWorkflow:SendReceipt", "RunWorkflow:SendReceipt"} <= names
    assert "SignalWithStartWorkflow:CustomerLoyalty" in names
    assert services_reached(spans) == CHECKOUT_SERVICES | FANOUT_SERVICES


async def test_every_service_call_is_a_client_span_with_the_services_span_under_it(
    traced_checkout: Traced,
) -> None:
    spans = traced_checkout.spans
    by_id = {s.context.span_id: s for s in spans}
    calls = [s for s in spans if s.kind is SpanKind.CLIENT and s.name.startswith(("GET", "POST"))]
    assert len(calls) >= 9  # create, reserve, charge, confirm, commit + the fan-out's calls
    served = [s for s in spans if s.kind is SpanKind.SERVER and s.parent is not None]
    for call in calls:
        assert call.parent is not None and by_id[call.parent.span_id].name.startswith(
            "RunActivity:"
        ), call.name
        servers = [s for s in served if s.parent and s.parent.span_id == call.context.span_id]
        assert len(servers) == 1, f"{call.name} {call.attributes}: no service span under it"
    assert any(
        s.resource.attributes[SERVICE_NAME] == "payments" and s.name == "POST /charges"
        for s in served
    )


async def test_log_lines_carry_order_workflow_and_trace_ids(traced_checkout: Traced) -> None:
    workflow_id = checkout_workflow_id(traced_checkout.order_id)
    trace_id = format_trace_id(traced_checkout.trace_id_of(traced_checkout.order_id))
    # The checkout's own lines, and those of the jobs it started (checkout-ID:OrderConfirmed:...).
    lines = [
        line
        for line in traced_checkout.log_lines
        if str(line.get("workflow_id") or "").startswith(workflow_id)
    ]
    assert {line["logger"] for line in lines} == {"temporalio.workflow", "temporalio.activity"}
    assert f"{workflow_id}:OrderConfirmed:receipt" in {line["workflow_id"] for line in lines}
    messages = [str(line["message"]) for line in lines]
    assert "saga decided: CONFIRMED" in messages
    assert any(
        m.startswith("POST http://127.0.0.1:") and "/charges answered 201" in m for m in messages
    )
    for line in lines:
        assert line["order_id"] == traced_checkout.order_id
        assert line["trace_id"] == trace_id, line


async def test_no_span_or_log_line_carries_the_card_number(traced_checkout: Traced) -> None:
    """The payments service got the number (POST /payment-methods, a typo of it, one without
    the key, a charge by number): its spans record the route and the status, never the
    body; nothing logs it."""
    card, spans = traced_checkout.card, traced_checkout.spans
    tokenized = [
        s
        for s in spans
        if s.name == "POST /payment-methods" and s.resource.attributes[SERVICE_NAME] == "payments"
    ]
    assert len(tokenized) == 3  # the net looks where the number went
    assert "/payment-methods" in traced_checkout.tokenizing_logs
    texts = [span.to_json() for span in spans]
    texts += [traced_checkout.tokenizing_logs, json.dumps(traced_checkout.log_lines)]
    for text in texts:
        assert card not in find_card_numbers(text)
        assert card[:12] not in text and card[-12:] not in text  # nor the typo, nor a part


def test_captured_headers_have_their_credentials_redacted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An operator may record request headers on spans; the service token and the publishable
    key among them are redacted, whatever else is asked to be."""
    monkeypatch.setenv(
        "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST",
        "authorization,x-publishable-key,user-agent",
    )
    monkeypatch.setenv("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS", "user-agent")
    exporter = InMemorySpanExporter()
    app = payments_app(str(tmp_path / "payments.sqlite"))
    instrument_service_app(app, provider_for("payments", exporter))
    key = publishable_key_headers(publishable_key_from_env())
    server = ThreadedService(app)
    server.start()
    try:
        card = random_card("4")
        response = httpx.post(
            f"{server.url}/payment-methods",
            json={"card_number": card},
            headers=key | headers_from_env(),
            timeout=10,
        )
        assert response.status_code == 201, response.text
    finally:
        server.stop()
    [span] = [s for s in exporter.get_finished_spans() if s.name == "POST /payment-methods"]
    attributes = dict(span.attributes or {})
    for header in ("authorization", "x_publishable_key", "user_agent"):
        assert attributes[f"http.request.header.{header}"] == ("[REDACTED]",), attributes
    assert card not in span.to_json() and key[PUBLISHABLE_KEY_HEADER] not in span.to_json()


def test_tracing_modes() -> None:
    assert TelemetrySettings(tracing="off").tracing == "off"
    assert span_exporter("off") is None
    assert type(span_exporter("console")).__name__ == "ConsoleSpanExporter"
    assert type(span_exporter("otlp")).__name__ == "OTLPSpanExporter"
