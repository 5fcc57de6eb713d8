"""Open-loop arrivals: calls started on a clock, at a fixed rate, whatever the earlier ones do.

    load = OpenLoop(call, order_ids, rate=8)
    await load.run_arrivals()          # returns once the last call has started
    await load.wait_answers(limit=60)  # then the rest of the answers, bounded

Arrival i is due at `start + i / rate`. The loop never waits for an answer before the next
arrival, so a call that stalls does not slow the offered rate; and each latency counts from
the arrival's due time, not from when the call started, so a generator that fell behind (its
own CPU, a blocked event loop) cannot hide a stall: its late starts count as latency.
"""

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from harness.bench.calls import Call

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
NO_ANSWER = "no answer"


@dataclass
class Arrival:
    order_id: str
    due: float  # the clock's time it was scheduled for
    started: float | None = None
    answered: float | None = None  # when the call returned or raised (None: no answer)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.answered is not None and self.error is None

    @property
    def latency(self) -> float | None:
        """Seconds from the due time to the answer: None unless CONFIRMED."""
        return None if not self.ok or self.answered is None else self.answered - self.due

    @property
    def late(self) -> float | None:
        """How late the generator started it."""
        return None if self.started is None else self.started - self.due


class OpenLoop:
    def __init__(
        self,
        call: Call,
        order_ids: Sequence[str],
        rate: float,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate {rate}: must be above 0")
        self.rate = rate
        self._call = call
        self._clock = clock
        self._sleep = sleep
        self.start = 0.0
        self.arrivals = [Arrival(order_id, 0.0) for order_id in order_ids]
        self._tasks: list[asyncio.Future[None]] = []

    @property
    def end(self) -> float:
        """When the arrivals stop: one interval after the last one was due."""
        return self.start + len(self.arrivals) / self.rate

    async def run_arrivals(self) -> None:
        """Start each call when it is due; one that is due already (this loop was held up)
        starts at once. Returns once the last one has started."""
        self.start = self._clock()
        for index, arrival in enumerate(self.arrivals):
            arrival.due = self.start + index / self.rate
            # Always yield, even when late: the calls started so far get to run.
            await self._sleep(max(0.0, arrival.due - self._clock()))
            self._tasks.append(asyncio.ensure_future(self._place(arrival)))
        await self._sleep(0)  # the last call starts too

    async def _place(self, arrival: Arrival) -> None:
        arrival.started = self._clock()
        try:
            confirmed = await self._call(arrival.order_id)
        except asyncio.CancelledError:
            arrival.error = f"{arrival.order_id}: {NO_ANSWER}"
            raise
        except Exception as err:
            arrival.error = f"{arrival.order_id}: {type(err).__name__}: {err}"
        else:
            if not confirmed:
                arrival.error = f"{arrival.order_id}: not confirmed"
        arrival.answered = self._clock()

    def pending(self) -> int:
        return sum(1 for task in self._tasks if not task.done())

    async def wait_answers(self, limit: float) -> None:
        """Wait up to `limit` seconds for the answers still out; cancel those that are not in
        by then (each is an error: no answer)."""
        pending = [task for task in self._tasks if not task.done()]
        if pending:
            await asyncio.wait(pending, timeout=limit)
        await self.cancel()

    async def cancel(self) -> None:
        """Give up on the answers still out."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for arrival in self.arrivals:
            if arrival.answered is None:
                arrival.error = arrival.error or f"{arrival.order_id}: {NO_ANSWER}"
