"""The trip's worker: `python -m examples.trip worker`, until SIGINT or SIGTERM.

Built on the engine's public API only, as a team of its own would write it: `connect()`
reads Temporal's connection from the environment (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, a
TOML profile, ...) and SAGA_CODEC_KEYS; `saga_worker` adds the engine's sweep and checks
that every step's activity is served. TRIP_TASK_QUEUE names the task queue (default trips).
"""

import asyncio
import logging
import os
import signal
from collections.abc import Mapping

from temporalio.client import Client
from temporalio.worker import Worker

from examples.trip.activities import TripActivities
from examples.trip.workflow import TripBookingWorkflow
from temporal_saga.worker import connect, saga_worker

TASK_QUEUE_ENV = "TRIP_TASK_QUEUE"
DEFAULT_TASK_QUEUE = "trips"

log = logging.getLogger("examples.trip.worker")


def task_queue(env: Mapping[str, str] | None = None) -> str:
    """The trip's task queue: TRIP_TASK_QUEUE of `env` (default: this process's)."""
    return (os.environ if env is None else env).get(TASK_QUEUE_ENV) or DEFAULT_TASK_QUEUE


def trip_worker(client: Client, queue: str | None = None) -> Worker:
    """A worker for the trip saga and its providers (and the engine's sweep)."""
    return saga_worker(
        client,
        task_queue=queue or task_queue(),
        sagas=[TripBookingWorkflow],
        activities=TripActivities().all(),
    )


async def run() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    client = await connect()
    queue = task_queue()
    async with trip_worker(client, queue):
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
