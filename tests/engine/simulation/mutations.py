"""Deliberate bugs, to prove the simulation finds them: each patches the engine for the
length of a `with` block (the engine passes through the workflow sandbox, so the workers in
this process run the patched code), and each is caught by a named rule within the CI seeds
(tests/engine/test_simulation.py). Nothing here is reachable from the engine itself."""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

from temporalio import workflow

import temporal_saga.compensations as compensations_module
import temporal_saga.workflow as workflow_module
from temporal_saga.compensations import Compensations, Phase
from temporal_saga.models import CompensationState
from temporal_saga.steps import SagaFailure
from temporal_saga.workflow import SagaWorkflow

T = TypeVar("T")


async def _in_declaration_order(self: Compensations) -> None:
    for registered in self._registered:  # the bug: oldest first
        await self._run_until_settled(registered)
    failed = any(r.state is CompensationState.FAILED for r in self.reports)
    self.phase = Phase.FAILED if failed else Phase.DONE
    self.on_change()


def _dropping_the_undo_of_a_failed_step(
    perform: Callable[..., Awaitable[Any]],
) -> Callable[..., Awaitable[Any]]:
    async def patched(self: SagaWorkflow[Any, Any], step: Any, arg: object) -> Any:
        try:
            return await perform(self, step, arg)
        except Exception:
            # The bug: a step that failed (timed out, say) "did nothing", so no undo.
            registered = self._compensations._registered
            registered[:] = [r for r in registered if r.report.name != step.undo_name]
            raise

    return patched


def _accepting_a_cancel_at_the_pivot(
    until_settled: Callable[..., Awaitable[None]],
) -> Callable[..., Awaitable[None]]:
    async def patched(self: SagaWorkflow[Any, Any], task: Any) -> None:
        while not task.done():
            try:
                await workflow.wait([task])
            except asyncio.CancelledError:
                # The bug: a Temporal cancellation stops the steps even in the pivot.
                self._stop = self._stop or SagaFailure(
                    self._current_step, workflow_module.CANCELLED, "the workflow was cancelled"
                )
                task.cancel()

    return patched


async def _shielded_once(work: Awaitable[T]) -> T:
    # The bug: one shield; a second cancel ends the wait, and the rest is lost.
    return await asyncio.shield(asyncio.ensure_future(work))


def _undoing_after_the_pivot(
    commit: Callable[..., Awaitable[None]],
) -> Callable[..., Awaitable[None]]:
    async def patched(self: SagaWorkflow[Any, Any]) -> None:
        await commit(self)
        if self._past_pivot:
            await self._compensations.run()  # the bug: undo once CONFIRMED

    return patched


MUTATIONS = {
    "compensate_in_declaration_order": "compensations_run_newest_first",
    "drop_the_undo_of_a_failed_step": "rejected_undoes_every_started_step",
    "accept_a_cancel_at_the_pivot": "a_cancel_is_refused_from_the_pivot_on",
    "lose_compensations_on_a_second_cancel": "rejected_undoes_every_started_step",
    "undo_after_confirmed": "nothing_undone_once_confirmed",
}


@contextlib.contextmanager
def mutated(name: str) -> Iterator[None]:
    """The engine with the deliberate bug `name` (a key of MUTATIONS), until the block ends."""
    with contextlib.ExitStack() as patches:
        patch = patches.enter_context(_Patch())
        if name == "compensate_in_declaration_order":
            patch(Compensations, "_run_all", _in_declaration_order)
        elif name == "drop_the_undo_of_a_failed_step":
            patch(
                SagaWorkflow, "_perform", _dropping_the_undo_of_a_failed_step(SagaWorkflow._perform)
            )
        elif name == "accept_a_cancel_at_the_pivot":
            patch(
                SagaWorkflow,
                "_until_settled",
                _accepting_a_cancel_at_the_pivot(SagaWorkflow._until_settled),
            )
        elif name == "lose_compensations_on_a_second_cancel":
            patch(workflow_module, "run_to_completion", _shielded_once)
            patch(compensations_module, "run_to_completion", _shielded_once)
        elif name == "undo_after_confirmed":
            patch(
                SagaWorkflow,
                "_commit_children",
                _undoing_after_the_pivot(SagaWorkflow._commit_children),
            )
        else:
            raise KeyError(f"no mutation {name!r}; known: {', '.join(MUTATIONS)}")
        yield


class _Patch:
    """Set attributes; put every one back on exit."""

    def __init__(self) -> None:
        self._saved: list[tuple[object, str, object]] = []

    def __enter__(self) -> "_Patch":
        return self

    def __call__(self, owner: object, name: str, value: object) -> None:
        self._saved.append((owner, name, getattr(owner, name)))
        setattr(owner, name, value)

    def __exit__(self, *exc: object) -> None:
        for owner, name, value in reversed(self._saved):
            setattr(owner, name, value)
