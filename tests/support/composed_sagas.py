"""Sagas that compose (tests/engine/test_groups.py, tests/engine/test_nested.py): a group of
three steps run together, and a parent saga whose second step is a nested saga of two legs.
Every activity writes what it did to LEDGER, under the plan's id, in the order it happened.
In a module of its own, with few imports: the workflow sandbox imports it again for every run.
"""

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

from pydantic import BaseModel
from temporalio import activity, workflow
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

# What the activities did, by plan.
LEDGER: dict[str, list[str]] = {}
# Undos told to keep failing until a test heals them: "<plan id>:<undo>".
HEALED: set[str] = set()


class Plan(BaseModel):
    plan_id: str
    # Activities that refuse for good.
    refuse: list[str] = []
    # Activities that take this long (heartbeating, so a cancel reaches them).
    slow: dict[str, float] = {}
    # Undos that keep failing until healed.
    stuck: list[str] = []
    attempts_before_attention: int = 2


def _did(plan: Plan, what: str) -> None:
    LEDGER.setdefault(plan.plan_id, []).append(what)


async def _act(plan: Plan, name: str) -> str:
    seconds = plan.slow.get(name, 0.0)
    try:
        for _ in range(int(seconds * 10)):  # bounded by the plan
            activity.heartbeat()
            await asyncio.sleep(0.1)
    except asyncio.CancelledError:
        _did(plan, f"cancelled {name}")
        raise
    if name in plan.refuse:
        _did(plan, f"refused {name}")
        raise ApplicationError(f"{name} refused", type=f"{name}_refused", non_retryable=True)
    _did(plan, name)
    return name


async def _undo(plan: Plan, name: str) -> None:
    if name in plan.stuck and f"{plan.plan_id}:{name}" not in HEALED:
        raise ApplicationError(f"{name} is down")
    _did(plan, name)


def _doing(name: str) -> Callable[[Plan], Awaitable[str]]:
    async def do(plan: Plan) -> str:
        return await _act(plan, name)

    return activity.defn(name=name)(do)


def _undoing(name: str) -> Callable[[Plan], Awaitable[None]]:
    async def undo(plan: Plan) -> None:
        await _undo(plan, name)

    return activity.defn(name=name)(undo)


# Each activity by its name: the steps', then the undos'.
DO = {name: _doing(name) for name in ("hold", "book_b", "book_c", "book_d", "check", "pay")}
DO |= {name: _doing(name) for name in ("leg_one", "leg_two")}
UNDO = {name: _undoing(name) for name in ("release", "cancel_b", "cancel_c", "cancel_d")}
UNDO |= {name: _undoing(name) for name in ("undo_leg_one", "undo_leg_two")}
ACTIVITIES: list[Callable[..., Awaitable[object]]] = [*DO.values(), *UNDO.values()]
HEARTBEAT = timedelta(seconds=2)


def _options(plan: Plan) -> SagaOptions:
    return SagaOptions(
        compensation=CompensationPolicy(
            initial_backoff=timedelta(milliseconds=200),
            attempts_before_attention=plan.attempts_before_attention,
        ),
    )


@workflow.defn(name="GroupedBooking")
class GroupedBooking(SagaWorkflow[Plan, SagaResult]):
    """hold, then b, c and d together, then pay (the pivot)."""

    hold = Step(DO["hold"], undo=UNDO["release"])
    b = Step(DO["book_b"], undo=UNDO["cancel_b"], heartbeat_timeout=HEARTBEAT)
    c = Step(DO["book_c"], undo=UNDO["cancel_c"], heartbeat_timeout=HEARTBEAT)
    d = Step(DO["book_d"], undo=UNDO["cancel_d"], heartbeat_timeout=HEARTBEAT)
    together = Group(b, c, d)
    pay = Step(DO["pay"], pivot=True)

    @workflow.init
    def __init__(self, plan: Plan) -> None:
        super().__init__(plan, _options(plan))

    @workflow.run
    async def run(self, plan: Plan) -> SagaResult:
        return await self.run_saga(self.book(plan))

    async def book(self, plan: Plan) -> None:
        await self.hold(plan)
        results = await self.together(self.d(plan), self.b(plan), self.c(plan))
        assert results == ("book_d", "book_b", "book_c")  # in the order of the calls
        await self.pay(plan)


@workflow.defn(name="Legs")
class Legs(SagaWorkflow[Plan, SagaResult]):
    """Two legs, no pivot: run nested, its parent decides."""

    leg_one = Step(DO["leg_one"], undo=UNDO["undo_leg_one"], heartbeat_timeout=HEARTBEAT)
    leg_two = Step(DO["leg_two"], undo=UNDO["undo_leg_two"], heartbeat_timeout=HEARTBEAT)

    @workflow.init
    def __init__(self, plan: Plan) -> None:
        super().__init__(plan, _options(plan))

    @workflow.run
    async def run(self, plan: Plan) -> SagaResult:
        return await self.run_saga(self.travel(plan))

    async def travel(self, plan: Plan) -> None:
        await self.leg_one(plan)
        await self.leg_two(plan)


@workflow.defn(name="Journey")
class Journey(SagaWorkflow[Plan, SagaResult]):
    """hold, the legs (a nested saga), a check, then pay (the pivot)."""

    hold = Step(DO["hold"], undo=UNDO["release"])
    legs = ChildSaga(Legs)
    check = Step(DO["check"], heartbeat_timeout=HEARTBEAT)
    pay = Step(DO["pay"], pivot=True)

    @workflow.init
    def __init__(self, plan: Plan) -> None:
        super().__init__(plan, _options(plan))

    @workflow.run
    async def run(self, plan: Plan) -> SagaResult:
        return await self.run_saga(self.go(plan))

    async def go(self, plan: Plan) -> None:
        await self.hold(plan)
        legs = await self.legs(plan)
        assert legs.steps_done == ["leg_one", "leg_two"]
        await self.check(plan)
        await self.pay(plan)


SAGAS = [GroupedBooking, Legs, Journey]
