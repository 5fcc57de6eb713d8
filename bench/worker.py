"""`python -m bench.worker`: a worker for the bare workflow on its own task queue, until
SIGINT/SIGTERM. Tuned like the checkout worker (worker.settings), so the comparison is fair."""

import asyncio
import logging
import os
import signal
import sys

from temporalio.worker import Worker

from bench.bare import BARE_TASK_QUEUE, BareWorkflow, noop
from worker.clients import connect_temporal
from worker.settings import Settings
from worker.tuning import worker_tuning


async def run_bench_worker() -> None:
    settings = Settings()
    client = await connect_temporal()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with Worker(
        client,
        task_queue=BARE_TASK_QUEUE,
        workflows=[BareWorkflow],
        activities=[noop],
        **worker_tuning(settings),
    ):
        logging.getLogger(__name__).info("worker polling task queue %s", BARE_TASK_QUEUE)
        await stop.wait()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    code = 0
    try:
        asyncio.run(run_bench_worker())
    except Exception:
        logging.exception("bench worker failed")
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    # temporalio can abort at interpreter exit (sdk-python #300): leave without finalizers.
    os._exit(code)


if __name__ == "__main__":
    main()
