"""A saga for Temporal workflows: ordered steps, each with its compensation.

Use it inside any workflow::

    saga = Saga()
    try:
        await saga.step("book_flight", lambda: book_flight(trip),
                        compensation=lambda: cancel_flight(trip))
        await saga.step("book_hotel", lambda: book_hotel(trip),
                        compensation=lambda: cancel_hotel(trip))
        await saga.step("charge", lambda: charge(trip), pivot=True)
    except Exception as failure:
        await saga.compensate()  # cancel_hotel, then cancel_flight
        ...

Rules it enforces:
- A step's compensation is registered *before* the step runs: a step that timed out may still
  have taken effect, so its undo must run too (compensations must therefore be idempotent and
  accept "nothing to undo").
- `compensate()` runs the registered compensations newest first (or all at once with
  `parallel=True`), retrying each with capped exponential backoff, and runs them to the end
  even when the workflow is cancelled while they run, however many cancels arrive.
- A compensation that is still failing after `attempts_before_attention` attempts (or fails
  with a non-retryable error) is *stuck*: with `continue_with_error` the saga records the
  failure and goes on; otherwise it moves to NEEDS_ATTENTION and waits for a person to
  `retry_compensation` or `skip_compensation(reason)` it (wire those to workflow updates).
- The pivot step is the point of no return: it runs to completion even if the workflow is
  cancelled meanwhile, and once it succeeded the saga never compensates.
"""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import TypeVar

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

T = TypeVar("T")
Compensation = Callable[[], Awaitable[object]]


class SagaStatus(StrEnum):
    RUNNING = "RUNNING"
    COMPENSATING = "COMPENSATING"
    NEEDS_ATTENTION = "NEEDS_ATTENTION"
    COMPENSATED = "COMPENSATED"
    # Compensation ended, but some compensations failed for good (continue_with_error).
    COMPENSATION_FAILED = "COMPENSATION_FAILED"
    PAST_PIVOT = "PAST_PIVOT"


class CompensationState(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    STUCK = "STUCK"
    DONE = "DONE"
    SKIPPED = "SKIPPED"
    FAILED = "FAILED"


@dataclass(frozen=True)
class CompensationPolicy:
    """Retries of a failing compensation, and when to stop and ask a person."""

    initial_backoff: timedelta = timedelta(seconds=1)
    backoff_coefficient: float = 2.0
    maximum_backoff: timedelta = timedelta(minutes=1)
    # None: retry forever without asking anyone.
    attempts_before_attention: int | None = None

    def backoff(self, failed_attempts: int) -> timedelta:
        seconds = self.initial_backoff.total_seconds() * self.backoff_coefficient ** (
            failed_attempts - 1
        )
        return min(timedelta(seconds=seconds), self.maximum_backoff)


@dataclass
class CompensationRecord:
    name: str
    state: CompensationState = CompensationState.PENDING
    attempts: int = 0
    last_error: str | None = None
    # Why an operator skipped it, if they did.
    skip_reason: str | None = None

    @property
    def done(self) -> bool:
        return self.state is CompensationState.DONE


@dataclass
class _Registered:
    record: CompensationRecord
    run: Compensation
    decision: "tuple[str, str | None] | None" = None  # ("retry"|"skip", reason)


class NothingToResolve(ValueError):
    """An operator asked to retry or skip a compensation that is not stuck."""


@dataclass
class Saga:
    policy: CompensationPolicy = field(default_factory=CompensationPolicy)
    parallel: bool = False
    continue_with_error: bool = False
    # Called whenever status or current step changes (e.g. to upsert search attributes).
    on_change: Callable[["Saga"], None] = lambda _saga: None
    status: SagaStatus = SagaStatus.RUNNING
    current_step: str | None = None
    steps_done: list[str] = field(default_factory=list)
    _registered: list[_Registered] = field(default_factory=list)
    _compensating: "asyncio.Future[list[CompensationRecord]] | None" = None

    # -- forward ---------------------------------------------------------------------------

    def add_compensation(self, name: str, compensation: Compensation) -> None:
        """Register an undo; compensations run in the reverse order of registration."""
        if self._compensating is not None or self.status is SagaStatus.PAST_PIVOT:
            raise RuntimeError(f"cannot register {name!r}: the saga is {self.status}")
        self._registered.append(_Registered(CompensationRecord(name), compensation))

    async def step(
        self,
        name: str,
        action: Callable[[], Awaitable[T]],
        *,
        compensation: Compensation | None = None,
        compensation_name: str | None = None,
        pivot: bool = False,
    ) -> T:
        """Run one step; its compensation (if any) is registered before the step starts.

        A pivot step runs to completion even if the workflow is cancelled meanwhile; after it
        succeeded the saga is PAST_PIVOT and `compensate()` refuses.
        """
        if compensation is not None:
            self.add_compensation(compensation_name or f"undo_{name}", compensation)
        self.current_step = name
        self.on_change(self)
        result = await (run_to_completion(action()) if pivot else action())
        self.steps_done.append(name)
        if pivot:
            self.status = SagaStatus.PAST_PIVOT
            self.on_change(self)
        return result

    @property
    def past_pivot(self) -> bool:
        return self.status is SagaStatus.PAST_PIVOT

    # -- backward --------------------------------------------------------------------------

    @property
    def compensations(self) -> list[CompensationRecord]:
        """Every registered compensation, in the order they run (newest first)."""
        return [registered.record for registered in reversed(self._registered)]

    @property
    def compensations_done(self) -> list[str]:
        return [record.name for record in self.compensations if record.done]

    @property
    def stuck(self) -> list[str]:
        return [r.name for r in self.compensations if r.state is CompensationState.STUCK]

    async def compensate(self) -> list[CompensationRecord]:
        """Undo every registered step; always runs to the end, whatever cancels arrive.

        Calling it again returns the same records without running anything twice.
        """
        if self.past_pivot:
            raise RuntimeError("the saga is past its pivot step: it only goes forward")
        if self._compensating is None:
            self.status = SagaStatus.COMPENSATING
            self.on_change(self)
            self._compensating = asyncio.ensure_future(self._compensate_all())
        return await run_to_completion(self._compensating)

    def retry_compensation(self, name: str | None = None) -> str:
        """Operator: try a stuck compensation again (its attempt budget starts over)."""
        registered = self._stuck_one(name)
        registered.decision = ("retry", None)
        return registered.record.name

    def skip_compensation(self, reason: str, name: str | None = None) -> str:
        """Operator: give up on a stuck compensation; the reason goes into the record."""
        if not reason.strip():
            raise NothingToResolve("a reason is required to skip a compensation")
        registered = self._stuck_one(name)
        registered.decision = ("skip", reason)
        return registered.record.name

    def check_stuck(self, name: str | None = None) -> str:
        """The stuck compensation an operator's request means; raises NothingToResolve.

        For update validators: it changes nothing.
        """
        return self._stuck_one(name).record.name

    def _stuck_one(self, name: str | None) -> _Registered:
        stuck = [
            r
            for r in self._registered
            if r.record.state is CompensationState.STUCK and r.decision is None
        ]
        if name is not None:
            stuck = [r for r in stuck if r.record.name == name]
        if not stuck:
            known = ", ".join(self.stuck) or "none"
            raise NothingToResolve(f"no stuck compensation named {name!r}; stuck: {known}")
        if len(stuck) > 1:
            names = ", ".join(r.record.name for r in stuck)
            raise NothingToResolve(f"several compensations are stuck ({names}): name one")
        return stuck[0]

    async def _compensate_all(self) -> list[CompensationRecord]:
        newest_first = list(reversed(self._registered))
        if self.parallel:
            await asyncio.gather(*(self._run_until_settled(r) for r in newest_first))
        else:
            for registered in newest_first:
                await self._run_until_settled(registered)
        failed = any(r.state is CompensationState.FAILED for r in self.compensations)
        self.status = SagaStatus.COMPENSATION_FAILED if failed else SagaStatus.COMPENSATED
        self.on_change(self)
        return self.compensations

    async def _run_until_settled(self, registered: _Registered) -> None:
        record = registered.record
        attempts_this_round = 0
        while True:
            record.state = CompensationState.RUNNING
            record.attempts += 1
            attempts_this_round += 1
            try:
                await registered.run()
            except Exception as err:  # every failure is retried or escalated, never dropped
                record.last_error = _describe(err)
                budget = self.policy.attempts_before_attention
                if _non_retryable(err) or (budget is not None and attempts_this_round >= budget):
                    if self.continue_with_error:
                        record.state = CompensationState.FAILED
                        workflow.logger.error("compensation %s failed: %s", record.name, err)
                        return
                    if await self._ask_operator(registered) == "skip":
                        return
                    attempts_this_round = 0
                    continue
                delay = self.policy.backoff(attempts_this_round)
                workflow.logger.warning(
                    "compensation %s failed (attempt %d): %s; retrying in %s",
                    record.name,
                    record.attempts,
                    record.last_error,
                    delay,
                )
                await workflow.sleep(delay)
            else:
                record.state = CompensationState.DONE
                return

    async def _ask_operator(self, registered: _Registered) -> str:
        record = registered.record
        record.state = CompensationState.STUCK
        registered.decision = None
        self.status = SagaStatus.NEEDS_ATTENTION
        self.on_change(self)
        workflow.logger.error("compensation %s needs attention: %s", record.name, record.last_error)
        await workflow.wait_condition(lambda: registered.decision is not None)
        assert registered.decision is not None
        action, reason = registered.decision
        if action == "skip":
            record.state = CompensationState.SKIPPED
            record.skip_reason = reason
        else:
            record.state = CompensationState.PENDING
        if not self.stuck:
            self.status = SagaStatus.COMPENSATING
            self.on_change(self)
        return action


async def run_to_completion(work: Awaitable[T]) -> T:
    """Await `work` to the end even if this task is cancelled (any number of times) meanwhile.

    A single `asyncio.shield` is not enough: the second cancel would end the wait.
    """
    task = asyncio.ensure_future(work)
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.cancelled():
                raise
            workflow.logger.info("cancel received during work that must finish; finishing it")
    return task.result()


def _non_retryable(err: BaseException) -> bool:
    cause = err.cause if isinstance(err, ActivityError) else err
    return isinstance(cause, ApplicationError) and cause.non_retryable


def _describe(err: BaseException) -> str:
    # ActivityError's own message is generic; the cause carries what the service said.
    cause = err.__cause__
    return f"{err}: {cause}" if cause is not None else str(err)
