"""Waiting for what happens elsewhere (a worker, the visibility store): bounded polls."""

import asyncio
from collections.abc import Awaitable, Callable

POLL_SECONDS = 0.1


async def eventually(
    check: Callable[[], Awaitable[bool]], what: str = "condition", seconds: float = 30
) -> None:
    """Poll `check` until it holds; fail, naming `what`, after `seconds`."""
    for _ in range(max(1, int(seconds / POLL_SECONDS))):
        if await check():
            return
        await asyncio.sleep(POLL_SECONDS)
    raise AssertionError(f"not met within {seconds:g} s: {what}")
