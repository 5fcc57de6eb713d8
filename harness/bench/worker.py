"""`python -m harness.bench.worker`: the bench's own workers, until SIGINT/SIGTERM: the bare
workflow (harness/bench/bare.py) on its task queue, and the checkout's no-op twin
(harness/bench/twin.py) on its own. Tuned like the checkout worker (worker.settings), so the
comparison is fair."""

import logging
from contextlib import AsyncExitStack

from temporalio.client import Client
from temporalio.worker import Worker

from harness.bench.bare import BARE_TASK_QUEUE, BareWorkflow, noop
from harness.bench.twin import (
    TWIN_TASK_QUEUE,
    TWIN_WORKFLOWS,
    TwinDeliveries,
    twin_commit,
    twin_consume,
    twin_step,
)
from worker.clients import connect_temporal
from worker.process import run_and_exit, stop_on_signals
from worker.settings import Settings
from worker.tuning import worker_tuning


def bare_worker(client: Client, settings: Settings) -> Worker:
    return Worker(
        client,
        task_queue=BARE_TASK_QUEUE,
        workflows=[BareWorkflow],
        activities=[noop],
        **worker_tuning(settings),
    )


def twin_worker(client: Client, settings: Settings) -> Worker:
    """The twin and its consumers on one task queue, as the checkout's are (worker/runner.py)."""
    return Worker(
        client,
        task_queue=TWIN_TASK_QUEUE,
        workflows=TWIN_WORKFLOWS,
        activities=[twin_step, twin_commit, twin_consume, TwinDeliveries(client).deliver],
        **worker_tuning(settings),
    )


async def run_bench_worker() -> None:
    settings = Settings()
    client = await connect_temporal()
    stop = stop_on_signals()
    async with AsyncExitStack() as workers:
        for worker in (bare_worker(client, settings), twin_worker(client, settings)):
            await workers.enter_async_context(worker)
        logging.getLogger(__name__).info(
            "worker polling task queues %s and %s", BARE_TASK_QUEUE, TWIN_TASK_QUEUE
        )
        await stop.wait()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    run_and_exit(run_bench_worker, "bench worker")


if __name__ == "__main__":
    main()
