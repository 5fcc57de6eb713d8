"""`python -m harness.bench.checkout_worker`: the checkout worker (worker/runner.py) with the
bench's variant of the checkout beside it (harness/bench/checkout_activities.py)."""

from harness.bench.checkout_activities import CheckoutActivitiesWorkflow
from telemetry.logs import configure_logging
from worker.process import run_and_exit
from worker.runner import run_worker


async def run_bench_checkout_worker() -> None:
    await run_worker(extra_workflows=[CheckoutActivitiesWorkflow])


def main() -> None:
    configure_logging()
    run_and_exit(run_bench_checkout_worker, "bench checkout worker")


if __name__ == "__main__":
    main()
