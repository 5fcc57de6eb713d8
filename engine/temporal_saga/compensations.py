"""The compensations of a saga: registered before their step, run newest first, to the end.

- `compensate()` runs the registered compensations newest first (or all at once with
  `parallel`), retrying each with capped exponential backoff, and runs them to the end even
  when the workflow is cancelled while they run, however many cancels arrive.
- A compensation still failing after `attempts_before_attention` attempts (or failing with a
  non-retryable error) is *stuck*: with `continue_with_error` it is recorded as FAILED and
  the rest go on; otherwise the saga waits in NEEDS_ATTENTION until an operator retries it
  (its attempt budget starts over) or skips it with a reason.
- Compensations must be idempotent and accept "nothing to undo": a step that timed out may
  still have taken effect, so its undo runs too.
"""

import asyncio
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import TypeVar

from temporalio import workflow
from temporalio.exceptions import ApplicationError, is_cancelled_exception

from temporal_saga.failures import read_failure
from temporal_saga.metrics import count_compensation_stuck

with workflow.unsafe.imports_passed_through():
    from temporal_saga.models import CompensationReport, CompensationState
    from temporal_saga.options import CompensationPolicy as CompensationPolicy

T = TypeVar("T")
Compensation = Callable[[], Awaitable[object]]


class Phase(StrEnum):
    """Where the compensations are."""

    NOT_STARTED = "NOT_STARTED"
    RUNNING = "RUNNING"
    NEEDS_ATTENTION = "NEEDS_ATTENTION"
    # Every compensation DONE or SKIPPED.
    DONE = "DONE"
    # Ended, but some failed for good (continue_with_error).
    FAILED = "FAILED"


class NothingToResolve(ValueError):
    """An operator asked to retry or skip a compensation that is not stuck."""


class _Registered:
    __slots__ = ("decision", "report", "run")

    def __init__(self, report: CompensationReport, run: Compensation) -> None:
        self.report = report
        self.run = run
        self.decision: tuple[str, str | None] | None = None  # ("retry" | "skip", reason)


class Compensations:
    def __init__(
        self,
        policy: CompensationPolicy | None = None,
        # Called whenever a compensation or the phase changes (the saga publishes then).
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.policy = policy or CompensationPolicy()
        self.on_change = on_change
        self.phase = Phase.NOT_STARTED
        self._registered: list[_Registered] = []
        self._running: asyncio.Future[None] | None = None

    def add(self, name: str, compensation: Compensation) -> None:
        """Register an undo; compensations run in the reverse order of registration."""
        if self.phase is not Phase.NOT_STARTED:
            raise RuntimeError(f"cannot register {name!r}: compensation has started")
        self._registered.append(
            _Registered(
                CompensationReport(name=name, attempts=0, state=CompensationState.PENDING),
                compensation,
            )
        )

    @property
    def reports(self) -> list[CompensationReport]:
        """Every registered compensation, in the order they run (newest first)."""
        return [registered.report for registered in reversed(self._registered)]

    def attempts_of(self, name: str) -> int:
        """The attempts of the compensation `name` so far (counting the one running)."""
        return next((r.report.attempts for r in self._registered if r.report.name == name), 0)

    @property
    def done(self) -> list[str]:
        return [r.name for r in self.reports if r.state is CompensationState.DONE]

    @property
    def stuck(self) -> list[str]:
        return [r.name for r in self.reports if r.state is CompensationState.STUCK]

    def start(self) -> None:
        """Enter RUNNING now (without waiting): the caller publishes once, then `run()`s."""
        if self._running is None:
            self.phase = Phase.RUNNING
            self._running = asyncio.ensure_future(self._run_all())

    async def run(self) -> None:
        """Undo every registered step; always runs to the end, whatever cancels arrive.
        Calling it again waits for the same run."""
        self.start()
        assert self._running is not None
        await run_to_completion(self._running)

    async def settle(self, name: str, action: Compensation) -> bool:
        """Run one action now, to the end, as a compensation runs: retried with backoff,
        and when stuck, waiting for an operator to retry or skip it; whatever cancels arrive.
        For the forward work of a repair. True when done, False when an operator skipped it."""
        registered = _Registered(
            CompensationReport(name=name, attempts=0, state=CompensationState.PENDING), action
        )
        self._registered.append(registered)
        if self.phase is Phase.NOT_STARTED:
            self.phase = Phase.RUNNING
            self.on_change()
        await run_to_completion(self._run_until_settled(registered))
        return registered.report.state is CompensationState.DONE

    def retry(self, name: str | None = None) -> str:
        """Operator: try a stuck compensation again (its attempt budget starts over)."""
        registered = self._stuck_one(name)
        registered.decision = ("retry", None)
        return registered.report.name

    def skip(self, reason: str, name: str | None = None) -> str:
        """Operator: give up on a stuck compensation; the reason goes into its report."""
        if not reason.strip():
            raise NothingToResolve("a reason is required to skip a compensation")
        registered = self._stuck_one(name)
        registered.decision = ("skip", reason)
        return registered.report.name

    def check_stuck(self, name: str | None = None) -> str:
        """The stuck compensation an operator's request means; raises NothingToResolve.
        For update validators: it changes nothing."""
        return self._stuck_one(name).report.name

    def validate_retry(self, name: str | None = None) -> None:
        """The validator of an operator's retry: refused (ApplicationError NothingToResolve)
        unless it names a stuck compensation."""
        try:
            self.check_stuck(name)
        except NothingToResolve as err:
            raise ApplicationError(str(err), type="NothingToResolve") from err

    def validate_skip(self, reason: str, name: str | None = None) -> None:
        """The validator of an operator's skip: a reason, and a stuck compensation."""
        if not reason.strip():
            raise ApplicationError("a reason is required to skip a compensation", type="NoReason")
        self.validate_retry(name)

    def _stuck_one(self, name: str | None) -> _Registered:
        stuck = [
            r
            for r in self._registered
            if r.report.state is CompensationState.STUCK and r.decision is None
        ]
        if name is not None:
            stuck = [r for r in stuck if r.report.name == name]
        if not stuck:
            known = ", ".join(self.stuck) or "none"
            raise NothingToResolve(f"no stuck compensation named {name!r}; stuck: {known}")
        if len(stuck) > 1:
            names = ", ".join(r.report.name for r in stuck)
            raise NothingToResolve(f"several compensations are stuck ({names}): name one")
        return stuck[0]

    async def _run_all(self) -> None:
        newest_first = list(reversed(self._registered))
        if self.policy.parallel:
            await asyncio.gather(*(self._run_until_settled(r) for r in newest_first))
        else:
            for registered in newest_first:
                await self._run_until_settled(registered)
        failed = any(r.state is CompensationState.FAILED for r in self.reports)
        self.phase = Phase.FAILED if failed else Phase.DONE
        self.on_change()

    async def _run_until_settled(self, registered: _Registered) -> None:
        report = registered.report
        attempts_this_round = 0
        while True:
            report.state = CompensationState.RUNNING
            report.attempts += 1
            attempts_this_round += 1
            self.on_change()
            try:
                await registered.run()
            except Exception as err:  # every failure is retried or escalated, never dropped
                if is_cancelled_exception(err):
                    raise
                failure = read_failure(err)
                report.last_error = failure.words
                self.on_change()
                budget = self.policy.attempts_before_attention
                if not failure.retryable or (budget is not None and attempts_this_round >= budget):
                    if self.policy.continue_with_error:
                        report.state = CompensationState.FAILED
                        workflow.logger.error(
                            "compensation %s failed: %s", report.name, failure.words
                        )
                        return
                    if await self._ask_operator(registered) == "skip":
                        return
                    attempts_this_round = 0
                    continue
                delay = self.policy.backoff(attempts_this_round)
                workflow.logger.warning(
                    "compensation %s failed (attempt %d): %s; retrying in %s",
                    report.name,
                    report.attempts,
                    report.last_error,
                    delay,
                )
                await workflow.sleep(delay)
            else:
                report.state = CompensationState.DONE
                self.on_change()
                return

    async def _ask_operator(self, registered: _Registered) -> str:
        report = registered.report
        report.state = CompensationState.STUCK
        registered.decision = None
        count_compensation_stuck(report.name)
        self.phase = Phase.NEEDS_ATTENTION
        self.on_change()
        workflow.logger.error("compensation %s needs attention: %s", report.name, report.last_error)
        await workflow.wait_condition(lambda: registered.decision is not None)
        assert registered.decision is not None
        action, reason = registered.decision
        if action == "skip":
            report.state = CompensationState.SKIPPED
            report.skip_reason = reason
        else:
            report.state = CompensationState.PENDING
        if not self.stuck:
            self.phase = Phase.RUNNING
            self.on_change()
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
