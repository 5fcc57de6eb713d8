"""Build and run the Worker: the checkout workflow and the activities of every service."""

import asyncio
import logging
import signal

from temporalio.client import Client
from temporalio.worker import Worker

from activities.inventory import InventoryActivities
from activities.orders import OrderActivities
from activities.payments import PaymentActivities
from worker.clients import ServiceClients, connect_temporal, service_clients
from worker.settings import Settings
from workflows.checkout import CheckoutWorkflow

WORKFLOWS = [CheckoutWorkflow]


def build_worker(client: Client, settings: Settings, services: ServiceClients) -> Worker:
    orders = OrderActivities(services.orders)
    inventory = InventoryActivities(services.inventory)
    payments = PaymentActivities(services.payments)
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=WORKFLOWS,
        activities=[
            orders.create_order,
            orders.confirm_order,
            orders.cancel_order,
            inventory.reserve_stock,
            inventory.release_stock,
            inventory.commit_stock,
            payments.charge_payment,
            payments.refund_payment,
        ],
    )


async def run_worker() -> None:
    settings = Settings()
    client = await connect_temporal()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with service_clients(settings) as services, build_worker(client, settings, services):
        logging.getLogger(__name__).info("worker polling task queue %s", settings.task_queue)
        await stop.wait()
