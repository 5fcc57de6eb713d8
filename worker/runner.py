"""Build and run the Worker: the checkout workflow, the fan-out's consumer workflows and the
activities of every service on the task queue."""

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from temporalio.client import Client
from temporalio.worker import Worker

from activities.analytics import AnalyticsActivities
from activities.deadletters import DeadLetterActivities
from activities.email import EmailActivities
from activities.events import EventActivities
from activities.inventory import InventoryActivities
from activities.loyalty import LoyaltyActivities
from activities.orders import OrderActivities
from activities.payments import PaymentActivities
from activities.reconcile import CheckoutRecords
from activities.warehouse import WarehouseActivities
from telemetry.settings import TelemetrySettings
from telemetry.tracing import configure_tracing
from temporal_saga import SagaSweepWorkflow
from temporal_saga.worker import saga_worker
from worker.bytecode import missing_bytecode, workflow_sources
from worker.clients import ServiceClients, connect_temporal, service_clients
from worker.process import stop_on_signals
from worker.settings import Settings
from worker.telemetry import metrics_runtime
from worker.tuning import worker_tuning
from workflows.analytics import AnalyticsWorkflow
from workflows.checkout import CheckoutWorkflow
from workflows.checkout_repair import CheckoutRepairWorkflow
from workflows.checkout_sweep import schedule_checkout_sweep
from workflows.jobs import SendReceiptWorkflow, ShipOrderWorkflow
from workflows.loyalty import CustomerLoyaltyWorkflow

# The fan-out's consumers: jobs (child workflows) and long-lived reactions; the checkout's
# repair, which the engine's sweep starts.
OTHER_WORKFLOWS: list[type] = [
    SendReceiptWorkflow,
    ShipOrderWorkflow,
    CustomerLoyaltyWorkflow,
    AnalyticsWorkflow,
    CheckoutRepairWorkflow,
]
# Every workflow the worker runs (the engine's sweep included).
WORKFLOWS: list[type] = [CheckoutWorkflow, *OTHER_WORKFLOWS, SagaSweepWorkflow]


@asynccontextmanager
async def checkout_workers(
    client: Client,
    settings: Settings,
    services: ServiceClients,
    extra_workflows: Sequence[type] = (),
) -> AsyncIterator[Worker]:
    """Run the worker of the task queue (yielded).
    `extra_workflows`: more workflow classes on the task queue (tests use it)."""
    orders = OrderActivities(services.orders)
    inventory = InventoryActivities(services.inventory)
    payments = PaymentActivities(services.payments)
    email = EmailActivities(services.email)
    warehouse = WarehouseActivities(services.warehouse)
    analytics = AnalyticsActivities(services.analytics)
    loyalty = LoyaltyActivities(services.loyalty)
    deadletters = DeadLetterActivities(services.deadletters)
    # The reconciler's finder of checkouts left with open records.
    records = CheckoutRecords(services.orders, services.inventory, services.payments)
    # Signal-with-start from a workflow goes through this activity, which holds the client.
    events = EventActivities(client)
    main = saga_worker(
        client,
        task_queue=settings.task_queue,
        sagas=[CheckoutWorkflow],
        workflows=[*OTHER_WORKFLOWS, *extra_workflows],
        activities=[
            orders.create_order,
            orders.confirm_order,
            orders.cancel_order,
            orders.cancel_unless_confirmed,
            inventory.reserve_stock,
            inventory.release_stock,
            inventory.commit_stock,
            payments.charge_payment,
            payments.refund_payment,
            email.send_email,
            warehouse.create_shipment,
            analytics.record_order_event,
            loyalty.add_loyalty_points,
            deadletters.record_dead_letter,
            events.deliver_order_event,
            records.find_open_checkouts,
        ],
        **worker_tuning(settings),
    )
    async with main:
        yield main


async def run_worker(extra_workflows: Sequence[type] = ()) -> None:
    """The worker process's work: connect, run `checkout_workers` until SIGINT/SIGTERM.
    `extra_workflows`: more workflow classes on the task queue (the bench's own variant)."""
    settings = Settings()
    warn_if_no_bytecode([*WORKFLOWS, *extra_workflows])
    # Tracing (CHECKOUT_TRACING) and the Prometheus endpoint (CHECKOUT_METRICS_ADDRESS).
    observe = TelemetrySettings()
    tracer_provider = configure_tracing("checkout-worker", observe)
    runtime = metrics_runtime(observe.metrics_address) if observe.metrics_address else None
    client = await connect_temporal(runtime=runtime, tracer_provider=tracer_provider)
    stop = stop_on_signals()
    try:
        async with (
            service_clients(settings, tracer_provider) as services,
            checkout_workers(client, settings, services, extra_workflows),
        ):
            if observe.metrics_address:
                logging.getLogger(__name__).info(
                    "metrics at http://%s/metrics", observe.metrics_address
                )
            logging.getLogger(__name__).info("worker polling task queue %s", settings.task_queue)
            if settings.reconcile_every_seconds:
                await schedule_checkout_sweep(client, settings)
            await stop.wait()
    finally:
        if tracer_provider is not None:
            tracer_provider.shutdown()  # send the last spans


def warn_if_no_bytecode(workflows: Sequence[type]) -> None:
    """Say so when the workflow code has no bytecode caches: the sandbox would compile it
    for every workflow run (worker/bytecode.py)."""
    if missing := missing_bytecode(workflow_sources(workflows)):
        logging.getLogger(__name__).warning(
            "%d workflow source files (%s, ...) have no current bytecode cache, so every "
            "workflow run compiles them (PYTHONDONTWRITEBYTECODE set, or a read-only tree?): "
            "byte-compile them at install, e.g. `python -m compileall`",
            len(missing),
            missing[0],
        )
