"""The life of a worker process: stop on SIGINT/SIGTERM, then leave without finalizers."""

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any, NoReturn


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM (call it inside the running loop)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


def run_and_exit(main: Callable[[], Coroutine[Any, Any, None]], what: str) -> NoReturn:
    """Run `main` to the end; exit 0, or 1 when it failed (logged as `what` failed)."""
    code = 0
    try:
        asyncio.run(main())
    except Exception:
        logging.exception("%s failed", what)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    # temporalio can abort at interpreter exit (sdk-python #300): leave without finalizers.
    os._exit(code)
