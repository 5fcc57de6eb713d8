"""The shipped order's worker: `python -m examples.shipping worker`, until SIGINT or SIGTERM.

One worker runs both sagas (the order and its nested shipping, which starts on its parent's
task queue) and all their activities; `saga_worker` adds the engine's sweep and checks that
every step's activity is served. SHIPPING_TASK_QUEUE names the task queue (default shipping).
"""

import asyncio
import logging
import os
import signal
from collections.abc import Mapping

from temporalio.client import Client
from temporalio.worker import Worker

from examples.shipping.activities import ShopActivities
from examples.shipping.workflow import OrderWorkflow, ShippingWorkflow
from temporal_saga.worker import connect, saga_worker

TASK_QUEUE_ENV = "SHIPPING_TASK_QUEUE"
DEFAULT_TASK_QUEUE = "shipping"

log = logging.getLogger("examples.shipping.worker")


def task_queue(env: Mapping[str, str] | None = None) -> str:
    """The example's task queue: SHIPPING_TASK_QUEUE of `env` (default: this process's)."""
    return (os.environ if env is None else env).get(TASK_QUEUE_ENV) or DEFAULT_TASK_QUEUE


def shipping_worker(
    client: Client, queue: str | None = None, activities: ShopActivities | None = None
) -> Worker:
    """A worker for both sagas and the desks (and the engine's sweep); `activities`: desks
    whose records the caller reads (a test's ledger), else new ones."""
    return saga_worker(
        client,
        task_queue=queue or task_queue(),
        sagas=[OrderWorkflow, ShippingWorkflow],
        activities=(activities or ShopActivities()).all(),
    )


async def run() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    client = await connect()
    queue = task_queue()
    async with shipping_worker(client, queue):
        log.info("worker polling task queue %s", queue)
        await stop.wait()
        log.info("stopping: the activities in flight are cancelled")
    log.info("stopped")


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    asyncio.run(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
