"""`python -m worker`: run a checkout worker until SIGINT/SIGTERM."""

import asyncio
import logging
import os
import sys

from worker.runner import run_worker


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
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
