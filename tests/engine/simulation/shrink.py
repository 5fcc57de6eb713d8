"""Shrinking: from a schedule that breaks a rule, the smallest one that still breaks it
(fewer stages, events and operator actions; plainer outcomes and options), by trying each
simplification and keeping those after which the rule still breaks."""

from collections.abc import Awaitable, Callable, Iterator

from tests.engine.simulation.plans import Call, Plan

# Runs candidates (all at once) and says, for each, whether it still breaks the rule.
Breaks = Callable[[list[Plan]], Awaitable[list[bool]]]
ROUNDS = 30


async def shrink(plan: Plan, breaks: Breaks, rounds: int = ROUNDS) -> Plan:
    """The smallest plan found that still breaks the rule (`plan` itself at worst)."""
    for _ in range(rounds):  # each round keeps one simplification, or stops
        candidates = list(_simpler(plan))
        if not candidates:
            return plan
        verdicts = await breaks(candidates)
        kept = next((c for c, broke in zip(candidates, verdicts, strict=True) if broke), None)
        if kept is None:
            return plan
        plan = kept
    return plan


def _simpler(plan: Plan) -> Iterator[Plan]:
    """Each plan one step simpler than `plan`, the biggest cuts first."""
    for i in range(len(plan.stages)):
        if sum(stage.kind in ("step", "group", "child") for stage in plan.stages) > 1 or (
            plan.stages[i].kind in ("pivot", "forward")
        ):
            yield _with(plan, stages=plan.stages[:i] + plan.stages[i + 1 :])
    for i in range(len(plan.events)):
        yield _with(plan, events=plan.events[:i] + plan.events[i + 1 :])
    if len(plan.operator) > 1:
        yield _with(plan, operator=plan.operator[1:])
    for name, plain in (
        ("parallel", False),
        ("continue_with_error", False),
        ("deadline_seconds", None),
        ("replay_every_task", False),
    ):
        if getattr(plan, name) != plain:
            yield _with(plan, **{name: plain})
    for si, stage in enumerate(plan.stages):
        for ci, call in enumerate(stage.calls):
            for plainer in _plainer(call):
                stages = [s.model_copy(deep=True) for s in plan.stages]
                stages[si].calls[ci] = plainer
                yield _with(plan, stages=stages)


def _plainer(call: Call) -> Iterator[Call]:
    if call.outcome != "ok":
        yield call.model_copy(update={"outcome": "ok", "faults": 0})
    if call.undo != "ok":
        yield call.model_copy(update={"undo": "ok", "undo_faults": 0})


def _with(plan: Plan, **changes: object) -> Plan:
    return plan.model_copy(update=changes, deep=True)


def size(plan: Plan) -> int:
    """How big a schedule is: its calls, events and operator actions."""
    return len(plan.calls()) + len(plan.events) + len(plan.operator)
