"""A saga for Temporal workflows: ordered steps, each with its compensation.

Use it inside any workflow::

    saga = Saga()
    try:
        await saga.step("book_flight", lambda: book_flight(trip),
                        compensation=lambda: cancel_flight(trip))
        await saga.step("book_hotel", lambda: book_hotel(trip),
                        compensation=lambda: cancel_hotel(trip))
    except Exception as failure:
        await saga.compensate()  # cancel_hotel, then cancel_flight
        ...

Rules it enforces:
- A step's compensation is registered *before* the step runs: a step that timed out may still
  have taken effect, so its undo must run too (compensations must therefore be idempotent and
  accept "nothing to undo").
- `compensate()` runs the registered compensations newest first, each until it succeeds
  (waiting with capped exponential backoff between attempts), and runs them to the end even
  when the workflow is cancelled while they run, however many cancels arrive.
"""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TypeVar

from temporalio import workflow

T = TypeVar("T")
Compensation = Callable[[], Awaitable[object]]


@dataclass(frozen=True)
class CompensationPolicy:
    """How long to wait between attempts of a compensation that keeps failing."""

    initial_backoff: timedelta = timedelta(seconds=1)
    backoff_coefficient: float = 2.0
    maximum_backoff: timedelta = timedelta(minutes=1)

    def backoff(self, failed_attempts: int) -> timedelta:
        seconds = self.initial_backoff.total_seconds() * self.backoff_coefficient ** (
            failed_attempts - 1
        )
        return min(timedelta(seconds=seconds), self.maximum_backoff)


@dataclass
class CompensationRecord:
    name: str
    attempts: int = 0
    done: bool = False
    last_error: str | None = None


@dataclass
class _Registered:
    name: str
    run: Compensation


@dataclass
class Saga:
    policy: CompensationPolicy = field(default_factory=CompensationPolicy)
    current_step: str | None = None
    steps_done: list[str] = field(default_factory=list)
    compensations: list[CompensationRecord] = field(default_factory=list)
    _registered: list[_Registered] = field(default_factory=list)
    _compensating: "asyncio.Future[list[CompensationRecord]] | None" = None

    def add_compensation(self, name: str, compensation: Compensation) -> None:
        """Register an undo; compensations run in the reverse order of registration."""
        if self._compensating is not None:
            raise RuntimeError("cannot add a compensation once compensation has started")
        self._registered.append(_Registered(name, compensation))

    async def step(
        self,
        name: str,
        action: Callable[[], Awaitable[T]],
        *,
        compensation: Compensation | None = None,
        compensation_name: str | None = None,
    ) -> T:
        """Run one step; its compensation (if any) is registered before the step starts."""
        if compensation is not None:
            self.add_compensation(compensation_name or f"undo_{name}", compensation)
        self.current_step = name
        result = await action()
        self.steps_done.append(name)
        return result

    @property
    def compensations_done(self) -> list[str]:
        return [record.name for record in self.compensations if record.done]

    async def compensate(self) -> list[CompensationRecord]:
        """Undo every registered step, newest first; always runs to the end.

        The work runs in its own task and is awaited through a shield in a loop: a cancel of
        the workflow (or several) interrupts only the wait, never the compensations. Calling it
        again returns the same records without running anything twice.
        """
        if self._compensating is None:
            self._compensating = asyncio.ensure_future(self._compensate_all())
        task = self._compensating
        while not task.done():
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                workflow.logger.info("cancel received during compensation; finishing it first")
        return task.result()

    async def _compensate_all(self) -> list[CompensationRecord]:
        for registered in reversed(self._registered):
            record = CompensationRecord(registered.name)
            self.compensations.append(record)
            await self._run_until_done(registered, record)
        return self.compensations

    async def _run_until_done(self, registered: _Registered, record: CompensationRecord) -> None:
        while True:
            record.attempts += 1
            try:
                await registered.run()
            except Exception as err:  # every failure is retried: an undo must not be lost
                record.last_error = _describe(err)
                delay = self.policy.backoff(record.attempts)
                workflow.logger.warning(
                    "compensation %s failed (attempt %d): %s; retrying in %s",
                    record.name,
                    record.attempts,
                    record.last_error,
                    delay,
                )
                await workflow.sleep(delay)
            else:
                record.done = True
                return


def _describe(err: BaseException) -> str:
    # ActivityError's own message is generic; the cause carries what the service said.
    cause = err.__cause__
    return f"{err}: {cause}" if cause is not None else str(err)
