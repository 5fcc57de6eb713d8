"""The simulated sagas: SimSaga declares a pool of steps (with and without undo, local
first, a group, a nested saga, a pivot, forward steps) and runs the stages its plan names;
SimChild is its nested saga. Every activity writes what it did to LEDGER, under the plan's
id, and acts as the plan says; HOOKS let the driver act as a call starts (a cancel as a
step starts, say). In a module of its own, with few imports: the sandbox imports it again
for every run, and a class made at run time could not be."""

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

from temporal_saga import (
    ChildSaga,
    CompensationPolicy,
    Group,
    SagaOptions,
    SagaResult,
    SagaWorkflow,
    Step,
)

with workflow.unsafe.imports_passed_through():
    from tests.engine.simulation.plans import (
        CHILD_SLOTS,
        FORWARD_SLOTS,
        GROUP_SLOTS,
        LOCAL_SLOTS,
        PIVOT,
        PLAIN_SLOTS,
        UNDO_SLOTS,
        Plan,
    )

# What each plan's activities did, in order: (what, slot, the n-th call of it).
# what: "start", "effect", "fail", "undo", "undone", "undo_fail".
LEDGER: dict[str, list[tuple[str, str, int]]] = {}
# Undos an operator fixed: "<plan id>".
HEALED: set[str] = set()
# The driver's hook, by plan id: called as a step's or an undo's call starts.
HOOKS: dict[str, Callable[[str, str, int], None]] = {}

# Fast retries: the simulation explores outcomes, not waiting.
STEP_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=10),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(milliseconds=40),
    maximum_attempts=3,
)
FOREVER_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=10),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(milliseconds=40),
    maximum_attempts=0,
)
TIMEOUT = timedelta(seconds=5)


def _calls(plan: Plan, what: str, slot: str) -> int:
    return sum(1 for w, s, _ in LEDGER.get(plan.plan_id, []) if (w, s) == (what, slot)) + 1


def _note(plan: Plan, what: str, slot: str, nth: int) -> None:
    LEDGER.setdefault(plan.plan_id, []).append((what, slot, nth))


def _did(plan: Plan, what: str, slot: str, nth: int) -> None:
    """An effect, once: a repeated call (at least once delivery) finds it done."""
    if not any((w, s) == (what, slot) for w, s, _ in LEDGER.get(plan.plan_id, [])):
        _note(plan, what, slot, nth)


def _make_step(slot: str) -> Callable[[Plan], Awaitable[str]]:
    async def do(plan: Plan) -> str:
        nth = _calls(plan, "start", slot)
        _note(plan, "start", slot, nth)
        hook = HOOKS.get(plan.plan_id)
        if hook is not None:
            hook("step_start", slot, nth)
        call = plan.call(slot)
        if call.outcome == "refused":
            _note(plan, "fail", slot, nth)
            raise ApplicationError(f"{slot} refused", type=f"{slot}_refused", non_retryable=True)
        if call.outcome == "exhausted" or (call.outcome == "transient" and nth <= call.faults):
            _note(plan, "fail", slot, nth)
            raise ApplicationError(f"{slot} unavailable (call {nth})", type="unavailable")
        _did(plan, "effect", slot, nth)
        if call.outcome == "effect_then_timeout":
            _note(plan, "fail", slot, nth)
            raise ApplicationError(f"{slot} timed out after taking effect", type="timeout")
        return slot

    do.__name__ = f"do_{slot}"
    return activity.defn(name=f"do_{slot}")(do)


def _make_undo(slot: str) -> Callable[[Plan], Awaitable[None]]:
    async def undo(plan: Plan) -> None:
        nth = _calls(plan, "undo", slot)
        _note(plan, "undo", slot, nth)
        hook = HOOKS.get(plan.plan_id)
        if hook is not None:
            hook("undo_start", slot, nth)
        call = plan.call(slot)
        healed = plan.plan_id in HEALED
        if (call.undo == "flaky" and nth <= call.undo_faults and not healed) or (
            call.undo == "stuck" and not healed
        ):
            _note(plan, "undo_fail", slot, nth)
            if hook is not None:
                hook("undo_fail", slot, nth)
            raise ApplicationError(f"undo of {slot} failed (call {nth})", type="undo_down")
        _did(plan, "undone", slot, nth)

    undo.__name__ = f"undo_{slot}"
    return activity.defn(name=f"undo_{slot}")(undo)


_UNDONE = (*UNDO_SLOTS, *LOCAL_SLOTS, *GROUP_SLOTS, *CHILD_SLOTS)
DO = {slot: _make_step(slot) for slot in (*_UNDONE, *PLAIN_SLOTS, PIVOT, *FORWARD_SLOTS)}
UNDO = {slot: _make_undo(slot) for slot in _UNDONE}
ACTIVITIES: list[Callable[..., Any]] = [*DO.values(), *UNDO.values()]


def _step(slot: str, **options: Any) -> Step[Any, Any, Any]:
    undo = UNDO.get(slot)
    retry = options.pop("retry_policy", STEP_RETRY)
    if undo is None:
        return Step(DO[slot], retry_policy=retry, start_to_close_timeout=TIMEOUT, **options)
    return Step(DO[slot], undo=undo, retry_policy=retry, start_to_close_timeout=TIMEOUT, **options)


def options_of(plan: Plan, *, deadline: bool) -> SagaOptions:
    return SagaOptions(
        deadline=timedelta(seconds=plan.deadline_seconds)
        if deadline and plan.deadline_seconds is not None
        else None,
        compensation=CompensationPolicy(
            initial_backoff=timedelta(milliseconds=10),
            maximum_backoff=timedelta(milliseconds=40),
            attempts_before_attention=plan.attempts_before_attention,
            parallel=plan.parallel,
            continue_with_error=plan.continue_with_error,
        ),
        compensation_retry=RetryPolicy(maximum_attempts=1),
    )


@workflow.defn(name="SimChild")
class SimChild(SagaWorkflow[Plan, SagaResult]):
    """The nested saga: its plan's child stage, one step after the other."""

    c0 = _step("c0")
    c1 = _step("c1")

    @workflow.init
    def __init__(self, plan: Plan) -> None:
        super().__init__(plan, options_of(plan, deadline=False))

    @workflow.run
    async def run(self, plan: Plan) -> SagaResult:
        return await self.run_saga(self.steps(plan))

    async def steps(self, plan: Plan) -> None:
        stage = plan.child_stage
        for call in stage.calls if stage else []:
            await getattr(self, call.slot)(plan)


@workflow.defn(name="SimSaga")
class SimSaga(SagaWorkflow[Plan, SagaResult]):
    """Every kind of step; a plan runs some of them, in its order."""

    u0 = _step("u0")
    u1 = _step("u1")
    u2 = _step("u2")
    u3 = _step("u3")
    u4 = _step("u4")
    u5 = _step("u5")
    l0 = _step("l0", local_first=True)
    l1 = _step("l1", local_first=True)
    n0 = _step("n0")
    n1 = _step("n1")
    g0 = _step("g0")
    g1 = _step("g1")
    g2 = _step("g2")
    grp = Group(g0, g1, g2)
    child = ChildSaga(SimChild)
    p = _step("p", pivot=True, retry_policy=FOREVER_RETRY)
    f0 = _step("f0", retry_policy=FOREVER_RETRY)
    f1 = _step("f1", retry_policy=FOREVER_RETRY)

    @workflow.init
    def __init__(self, plan: Plan) -> None:
        super().__init__(plan, options_of(plan, deadline=True))

    @workflow.run
    async def run(self, plan: Plan) -> SagaResult:
        return await self.run_saga(self.stages(plan))

    async def stages(self, plan: Plan) -> None:
        for stage in plan.stages:
            if stage.kind == "group":
                await self.grp(*(getattr(self, call.slot)(plan) for call in stage.calls))
            elif stage.kind == "child":
                await self.child(plan)
            else:
                await getattr(self, stage.calls[0].slot)(plan)


SAGAS = [SimSaga, SimChild]
