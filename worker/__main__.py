"""`python -m worker`: run a checkout worker until SIGINT/SIGTERM."""

import asyncio
import logging
import os
import sys

from telemetry.logs import configure_logging
from worker.runner import run_worker


def main() -> None:
    configure_logging()  # JSON lines with the order and workflow ids (CHECKOUT_LOG_FORMAT)
    code = 0
    try:
        asyncio.run(run_worker())
    except Exception:
        logging.exception("worker failed")
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    # temporalio can abort at interpreter exit (sdk-python #300): leave without finalizers.
    os._exit(code)


if __name__ == "__main__":
    main()
