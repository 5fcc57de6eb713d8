"""A random schedule: the saga a seed builds (its stages: steps, a group, a nested saga, the
pivot, forward steps), each call's outcome, the options, and what happens to it (cancels,
the deadline, an operator's retry or skip, a terminate and the sweep, a worker with no
cache that replays every task). Plain data: the workflow reads its stages from it, the
activities their outcomes, the driver its events, and a failing one prints as JSON that a
regression test pastes back."""

import random
from typing import Literal

from pydantic import BaseModel, Field

# The declared steps a plan draws from (tests/engine/simulation/sagas.py declares them).
UNDO_SLOTS = ("u0", "u1", "u2", "u3", "u4", "u5")  # with an undo
LOCAL_SLOTS = ("l0", "l1")  # with an undo, local first
PLAIN_SLOTS = ("n0", "n1")  # no undo
GROUP_SLOTS = ("g0", "g1", "g2")  # the group's members, with undos
CHILD_SLOTS = ("c0", "c1")  # the nested saga's steps, with undos
FORWARD_SLOTS = ("f0", "f1")  # after the pivot
PIVOT = "p"

# How a step's call goes: at once; after some transient faults (then it works); never
# (transient every time, so it fails once its retries are spent); refused at once; it takes
# effect, then times out every time (so it fails having taken effect).
StepOutcome = Literal["ok", "transient", "exhausted", "refused", "effect_then_timeout"]
# How an undo's call goes: at once; after some failures; stuck until an operator acts.
UndoOutcome = Literal["ok", "flaky", "stuck"]
# What an operator does with a stuck compensation: fix the cause then retry; retry without
# fixing (it gets stuck again, then the next action); skip with a reason.
OperatorAction = Literal["heal_and_retry", "retry", "skip"]
# When something happens: as a step's call starts, as an undo's call starts.
Trigger = Literal["step_start", "undo_start"]
EventKind = Literal["cancel_update", "temporal_cancel", "terminate"]


class Call(BaseModel):
    slot: str
    outcome: StepOutcome = "ok"
    faults: int = 0  # "transient": failed calls before it works
    undo: UndoOutcome = "ok"
    undo_faults: int = 0  # "flaky": failed calls before it works


class Stage(BaseModel):
    kind: Literal["step", "group", "child", "pivot", "forward"]
    # One call, or the group's members in the order of the group's call, or the child's.
    calls: list[Call]


class Event(BaseModel):
    kind: EventKind
    trigger: Trigger
    slot: str  # the step or undo whose call starts it
    # The n-th call of that slot (1: its first).
    nth: int = 1


class Plan(BaseModel):
    plan_id: str
    seed: int
    stages: list[Stage]
    parallel: bool = False
    continue_with_error: bool = False
    attempts_before_attention: int = Field(default=2, ge=1)
    # Seconds, counted by the saga's timer; None: no deadline.
    deadline_seconds: float | None = None
    events: list[Event] = []
    operator: list[OperatorAction] = []
    # Its worker keeps no workflow in cache: every task replays the history so far.
    replay_every_task: bool = False

    def calls(self) -> list[Call]:
        return [call for stage in self.stages for call in stage.calls]

    def call(self, slot: str) -> Call:
        return next(call for call in self.calls() if call.slot == slot)

    @property
    def has_pivot(self) -> bool:
        return any(stage.kind == "pivot" for stage in self.stages)

    @property
    def child_stage(self) -> Stage | None:
        return next((stage for stage in self.stages if stage.kind == "child"), None)


def make_plan(seed: int, *, terminate: bool = False) -> Plan:
    """The schedule of `seed`: the same seed, the same schedule."""
    rng = random.Random(seed)
    before = rng.randint(1, 6)
    pool = [
        *rng.sample(UNDO_SLOTS, k=min(before, 4)),
        *rng.sample(LOCAL_SLOTS, k=rng.randint(0, 1)),
    ]
    pool += rng.sample(PLAIN_SLOTS, k=rng.randint(0, 1))
    rng.shuffle(pool)
    stages = [Stage(kind="step", calls=[_step_call(rng, slot)]) for slot in pool[: max(1, before)]]
    if rng.random() < 0.35:
        members = list(GROUP_SLOTS)
        rng.shuffle(members)
        stages.insert(
            rng.randint(0, len(stages)),
            Stage(kind="group", calls=[_step_call(rng, s) for s in members]),
        )
    if rng.random() < 0.3:
        child = [_step_call(rng, slot) for slot in CHILD_SLOTS]
        stages.insert(rng.randint(0, len(stages)), Stage(kind="child", calls=child))
    if rng.random() < 0.75:
        pivot = Call(slot=PIVOT, outcome=rng.choice(["ok", "ok", "transient", "refused"]))
        pivot.faults = rng.randint(1, 3) if pivot.outcome == "transient" else 0
        stages.append(Stage(kind="pivot", calls=[pivot]))
        for slot in FORWARD_SLOTS[: rng.randint(0, 2)]:
            outcome = rng.choice(["ok", "transient"])
            forward = Call(
                slot=slot,
                outcome=outcome,
                faults=rng.randint(1, 3) if outcome == "transient" else 0,
            )
            stages.append(Stage(kind="forward", calls=[forward]))
    plan = Plan(
        plan_id=f"sim-{seed}",
        seed=seed,
        stages=stages,
        parallel=rng.random() < 0.25,
        continue_with_error=rng.random() < 0.2,
        attempts_before_attention=rng.randint(1, 3),
        deadline_seconds=rng.choice([None, None, None, None, 1.0, 5.0]),
        replay_every_task=rng.random() < 0.3,
    )
    if any(call.slot in LOCAL_SLOTS for call in plan.calls()):
        # A worker that caches nothing can re-run a local activity again and again (its task
        # evicted mid-way): the SDK's, not the engine's (docs/reliability.md, "Local steps").
        plan.replay_every_task = False
    plan.events = _events(rng, plan, terminate)
    actions: list[OperatorAction] = ["heal_and_retry", "retry", "skip"]
    plan.operator = [rng.choice(actions) for _ in range(rng.randint(0, 3))]
    plan.operator.append("heal_and_retry")  # in the end, someone fixes it
    return plan


def _step_call(rng: random.Random, slot: str) -> Call:
    outcomes: list[StepOutcome] = ["ok", "transient", "exhausted", "refused", "effect_then_timeout"]
    outcome = rng.choices(outcomes, weights=[30, 6, 1, 2, 1])[0]
    call = Call(slot=slot, outcome=outcome)
    if outcome == "transient":
        call.faults = rng.randint(1, 2)
    if slot[0] in "ulgc":
        undos: list[UndoOutcome] = ["ok", "flaky", "stuck"]
        call.undo = rng.choices(undos, weights=[8, 3, 1])[0]
        call.undo_faults = rng.randint(1, 4) if call.undo == "flaky" else 0
    return call


def _events(rng: random.Random, plan: Plan, terminate: bool) -> list[Event]:
    slots = [call.slot for call in plan.calls()]
    undoable = [call.slot for call in plan.calls() if call.slot[0] in "ulgc"]
    events: list[Event] = []
    for _ in range(rng.choice([0, 0, 1, 1, 2, 3])):
        kind: EventKind = rng.choice(["cancel_update", "temporal_cancel"])
        if undoable and rng.random() < 0.4:
            events.append(Event(kind=kind, trigger="undo_start", slot=rng.choice(undoable)))
        else:
            events.append(Event(kind=kind, trigger="step_start", slot=rng.choice(slots)))
    if terminate:
        events.append(Event(kind="terminate", trigger="step_start", slot=rng.choice(slots)))
    return events


def runs_on_time_skipping(plan: Plan) -> bool:
    """Whether the time-skipping test server runs this schedule as a real server does. It
    refuses a workflow task that cancels an activity completing in that same task, or cancels
    a timer, then never hands the task out again (sdk-java #2391, #3088), and it has no
    visibility for the sweep. So: no event (a cancel or a terminate), no deadline (its timer is
    cancelled as the saga ends), and no group member that fails (the group cancels the rest).
    The others run on the dev server."""
    group_fails = any(
        call.outcome not in ("ok", "transient")
        for stage in plan.stages
        if stage.kind == "group"
        for call in stage.calls
    )
    return not plan.events and plan.deadline_seconds is None and not group_fails
