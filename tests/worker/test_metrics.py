"""The worker's Prometheus endpoint: the SDK's metrics and the checkout's business counters.

A worker of its own (own task queue) on a client whose SDK runtime serves Prometheus on a
free port; a confirmed, a declined and an out-of-stock checkout; then a scrape.
"""

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from models.checkout import (
    SEARCH_ATTRIBUTES,
    CartItem,
    CheckoutOptions,
    CheckoutRequest,
    CheckoutResult,
    checkout_workflow_id,
)
from models.events import OrderConfirmed
from models.orders import Order, OrderLine, OrderStatus
from models.payments import CARD_DECLINED, CARD_OK
from stack.launcher import free_port, venv_binary, worker_env
from starter.checkouts import place_checkout
from temporal_saga import metrics
from temporal_saga.models import Outcome
from tests.support.cards import card_token
from tests.support.fake_shop import HEALED, PAYMENT_TOKEN, SCRIPT, scripted_checkout_workers
from tests.support.fanout_probe import PROBE_WORKFLOWS, FanoutProbeBroken
from worker.clients import connect_temporal, service_clients
from worker.runner import WORKFLOWS, checkout_workers
from worker.settings import Settings
from worker.telemetry import metrics_runtime
from workflows.checkout import CheckoutWorkflow
from workflows.fanout import DEAD_LETTERS

TASK_QUEUE = "checkout-metrics"
# The checkout with scripted activities (tests/support/fake_shop.py): a compensation that sticks.
FAKE_TASK_QUEUE = "checkout-metrics-scripted"
SCRAPE_TIMEOUT_SECONDS = 20.0

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@dataclass
class MetricsWorker:
    client: Client
    url: str
    runtime_replayer: Replayer


@pytest.fixture(scope="module")
async def metrics_worker(
    checkout_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[MetricsWorker]:
    """On a Temporal server of its own: the fan-out's long-lived workflows (`analytics-{shard}`)
    start on the task queue of the worker that announces first, which here stops with this
    module."""
    async with await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(venv_binary("temporal")),
        ui=False,
        dev_server_log_level="warn",
        search_attributes=SEARCH_ATTRIBUTES,
    ) as temporal:
        target = temporal.client.service_client.config.target_host
        async with _metrics_worker(checkout_settings, target, tmp_path_factory) as worker:
            yield worker


@asynccontextmanager
async def _metrics_worker(
    checkout_settings: Settings, target: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[MetricsWorker]:
    address = f"127.0.0.1:{free_port()}"
    runtime = metrics_runtime(address)
    client = await connect_temporal(
        worker_env(tmp_path_factory.mktemp("metrics"), target, {}), runtime=runtime
    )
    settings = checkout_settings.model_copy(update={"task_queue": TASK_QUEUE})
    replayer = Replayer(
        workflows=WORKFLOWS, data_converter=pydantic_data_converter, runtime=runtime
    )
    async with (
        service_clients(settings) as clients,
        checkout_workers(client, settings, clients, extra_workflows=PROBE_WORKFLOWS),
        scripted_checkout_workers(client, FAKE_TASK_QUEUE),
    ):
        yield MetricsWorker(client, f"http://{address}/metrics", replayer)


async def scrape(url: str) -> Samples:
    async with httpx.AsyncClient(timeout=5) as http:
        response = await http.get(url)
    response.raise_for_status()
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            # The parser names a counter's samples NAME_total; the SDK exports them as NAME.
            name = family.name if sample.name == f"{family.name}_total" else sample.name
            samples[(name, frozenset(sample.labels.items()))] = sample.value
    return samples


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every series of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(value for (n, lbls), value in samples.items() if n == name and wanted <= lbls)


Expected = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape_until(url: str, expected: Expected) -> Samples:
    """Scrape until every expected total is reached (the SDK exports them shortly after)."""
    deadline = asyncio.get_running_loop().time() + SCRAPE_TIMEOUT_SECONDS
    while True:
        samples = await scrape(url)
        reached = all(total(samples, n, **dict(lbls)) >= v for (n, lbls), v in expected.items())
        if reached or asyncio.get_running_loop().time() > deadline:
            return samples
        await asyncio.sleep(0.25)


def order(payment_token: str, sku: str, prefix: str) -> CheckoutRequest:
    return CheckoutRequest(
        order_id=f"{prefix}-{uuid.uuid4().hex[:10]}",
        customer_id="customer-metrics",
        email="metrics@example.com",
        payment_token=payment_token,
        items=[CartItem(sku=sku, quantity=1)],
    )


async def test_business_and_sdk_counters_on_the_prometheus_endpoint(
    metrics_worker: MetricsWorker, checkout_settings: Settings
) -> None:
    client, url = metrics_worker.client, metrics_worker.url
    payments = str(checkout_settings.payments_url)
    ok, declined_card = card_token(payments, CARD_OK), card_token(payments, CARD_DECLINED)
    confirmed = order(ok, "MUG-BLUE", "metrics-ok")
    declined = order(declined_card, "MUG-BLUE", "metrics-declined")
    sold_out = order(ok, "VINYL-SOLDOUT", "metrics-soldout")
    results = await asyncio.gather(
        *(place_checkout(client, r, TASK_QUEUE) for r in (confirmed, declined, sold_out))
    )
    assert [r.status for r in results] == [
        Outcome.CONFIRMED,
        Outcome.REJECTED,
        Outcome.REJECTED,
    ]
    assert [r.reason_code for r in results[1:]] == ["card_declined", "out_of_stock"]

    checkout = (("workflow_type", "Checkout"), ("task_queue", TASK_QUEUE))
    expected: Expected = {
        (metrics.CONFIRMED, checkout): 1.0,
        (metrics.REJECTED, (*checkout, ("reason", "card_declined"))): 1.0,
        (metrics.REJECTED, (*checkout, ("reason", "out_of_stock"))): 1.0,
        # Declined: refund, release, cancel. Sold out: release, cancel (nothing was charged).
        (metrics.COMPENSATIONS_RUN, (("compensation", "cancel_order"),)): 2.0,
        (metrics.COMPENSATIONS_RUN, (("compensation", "release_stock"),)): 2.0,
        (metrics.COMPENSATIONS_RUN, (("compensation", "refund_payment"),)): 1.0,
        ("temporal_workflow_completed", checkout): 3.0,
    }
    samples = await scrape_until(url, expected)
    for (name, labels), value in expected.items():
        # Exactly: a counter recorded twice for one checkout would be as wrong as a missing one.
        assert total(samples, name, **dict(labels)) == value, (name, labels)
    assert total(samples, metrics.COMPENSATIONS_STUCK) == 0
    # The SDK's own metrics are on the same endpoint: the steps run as local activities.
    assert total(
        samples, "temporal_local_activity_execution_latency_count", activity_type="charge_payment"
    )

    # Replaying the histories (as a new worker would) records nothing again.
    for request in results:
        handle = client.get_workflow_handle(checkout_workflow_id(request.order_id))
        await metrics_worker.runtime_replayer.replay_workflow(await handle.fetch_history())
    again = await scrape(url)
    for (name, labels), value in expected.items():
        if name.startswith("saga_"):
            assert total(again, name, **dict(labels)) == value, (name, labels)


async def test_stuck_compensations_and_dead_letters_are_counted(
    metrics_worker: MetricsWorker,
) -> None:
    client, url = metrics_worker.client, metrics_worker.url
    # A stuck compensation: the scripted shop's cancel_order fails until healed.
    request = order(PAYMENT_TOKEN, "SKU-1", "metrics-stuck").model_copy(
        update={"options": CheckoutOptions(compensation_attempts_before_attention=1)}
    )
    SCRIPT[request.order_id] = {"reserve_stock": "out_of_stock", "cancel_order": "fail"}
    handle = await client.start_workflow(
        CheckoutWorkflow.run,
        request,
        id=checkout_workflow_id(request.order_id),
        task_queue=FAKE_TASK_QUEUE,
    )
    await wait_for_status(handle, "NEEDS_ATTENTION")
    HEALED.add(f"{request.order_id}:cancel_order")
    await handle.execute_update(CheckoutWorkflow.retry_compensation, "cancel_order")
    assert (await handle.result()).status is Outcome.REJECTED
    # A dead letter: an announcement to a reaction that cannot be signalled.
    request = order(PAYMENT_TOKEN, "MUG-BLUE", "metrics-dlq")
    priced = Order(
        order_id=request.order_id,
        customer_id=request.customer_id,
        currency=request.currency,
        lines=[OrderLine(sku="MUG-BLUE", quantity=1, unit_price_cents=1250)],
        total_cents=1250,
        status=OrderStatus.PENDING,
    )
    event = OrderConfirmed.from_checkout(
        request,
        priced,
        workflow_id=checkout_workflow_id(f"metrics-dlq-{uuid.uuid4().hex[:8]}"),
        occurred_at=datetime.now(UTC),
    )
    report = await client.execute_workflow(
        FanoutProbeBroken.run, event, id=f"probe-{uuid.uuid4().hex[:10]}", task_queue=TASK_QUEUE
    )
    assert report.failed == ["broken"]

    expected: Expected = {
        (metrics.COMPENSATIONS_STUCK, (("compensation", "cancel_order"),)): 1.0,
        (DEAD_LETTERS, (("consumer", "broken"),)): 1.0,
    }
    samples = await scrape_until(url, expected)
    for (name, labels), value in expected.items():
        assert total(samples, name, **dict(labels)) == value, (name, labels)


Handle = WorkflowHandle[CheckoutWorkflow, CheckoutResult]


async def wait_for_status(handle: Handle, status: str) -> None:
    for _ in range(300):  # 30 s at most
        if (await handle.query(CheckoutWorkflow.status)).status == status:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"checkout never reached {status}")
