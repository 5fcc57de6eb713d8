"""`python -m worker`: run a checkout worker until SIGINT/SIGTERM."""

from telemetry.logs import configure_logging
from worker.process import run_and_exit
from worker.runner import run_worker


def main() -> None:
    configure_logging()  # JSON lines with the order and workflow ids (CHECKOUT_LOG_FORMAT)
    run_and_exit(run_worker, "worker")


if __name__ == "__main__":
    main()
