"""`python -m bench.worker`: a worker for the bare workflow on its own task queue, until
SIGINT/SIGTERM. Tuned like the checkout worker (worker.settings), with an after-answer worker
like the checkout's, so the comparison is fair."""

import logging

from temporalio.worker import Worker

from bench.bare import BARE_TASK_QUEUE, BareWorkflow, noop
from worker.after_answer import AnswersInFlight, after_answer_slots, after_answer_worker
from worker.clients import connect_temporal
from worker.process import run_and_exit, stop_on_signals
from worker.settings import Settings
from worker.tuning import worker_tuning


async def run_bench_worker() -> None:
    settings = Settings()
    client = await connect_temporal()
    stop = stop_on_signals()
    # As the checkout's: every activity of the main worker is a step before the answer.
    answers = AnswersInFlight()
    slots = after_answer_slots(settings, answers)
    async with (
        Worker(
            client,
            task_queue=BARE_TASK_QUEUE,
            workflows=[BareWorkflow],
            activities=[noop],
            interceptors=[answers.interceptor()],
            **worker_tuning(settings),
        ),
        after_answer_worker(client, BARE_TASK_QUEUE, [noop], slots),
    ):
        logging.getLogger(__name__).info("worker polling task queue %s", BARE_TASK_QUEUE)
        await stop.wait()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    run_and_exit(run_bench_worker, "bench worker")


if __name__ == "__main__":
    main()
