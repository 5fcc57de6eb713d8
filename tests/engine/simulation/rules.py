"""The engine's rules, each a named check of one finished schedule: its plan, the ledger of
what its activities did, its result (and its nested saga's), its history, its status query
and search attributes. A check returns the words of a violation, or None."""

from collections.abc import Callable
from dataclasses import dataclass

from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause
from temporalio.api.history.v1 import HistoryEvent

from temporal_saga.models import CompensationState, Outcome, SagaResult
from tests.engine.simulation.plans import PIVOT, Plan

Ledger = list[tuple[str, str, int]]
# The reasons of a saga stopped from outside its steps.
STOPS = {"cancelled", "deadline_exceeded", "parent_compensated"}
SERVER_CAUSES = {
    WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND,
    WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_RESET_WORKFLOW,
}


@dataclass
class Finished:
    """Everything known of one schedule once it ended."""

    plan: Plan
    ledger: Ledger
    result: SagaResult
    child_result: SagaResult | None
    events: list[HistoryEvent]
    child_events: list[HistoryEvent]
    status_query: str | None  # the status query's SagaStatus after the end
    status_attribute: str | None  # the SagaStatus search attribute after the end
    replay_error: str | None
    # Terminated mid-way, then settled by the sweep.
    swept: bool = False


# True: the rule held; False: it had nothing to check here; words: how it was broken.
Verdict = bool | str
Rule = Callable[[Finished], Verdict]


def _has(ledger: Ledger, what: str, slot: str) -> bool:
    return any((w, s) == (what, slot) for w, s, _ in ledger)


def _succeeded(f: Finished, slot: str) -> bool:
    return _has(f.ledger, "effect", slot) and f.plan.call(slot).outcome != "effect_then_timeout"


def confirmed_iff_the_pivot_succeeded(f: Finished) -> Verdict:
    """CONFIRMED if and only if the pivot succeeded, or, with no pivot, every step did."""
    confirmed = f.result.status is Outcome.CONFIRMED
    if f.plan.has_pivot:
        succeeded = _has(f.ledger, "effect", PIVOT)
        if confirmed != succeeded:
            return f"decided {f.result.status.value}, yet the pivot took effect: {succeeded}"
        return True
    succeeded = all(_succeeded(f, call.slot) for call in f.plan.calls())
    if confirmed and not succeeded:
        return "decided CONFIRMED, yet a step did not succeed"
    # With no pivot, a stop taken before the decision rejects even a saga whose last step
    # then succeeded; nothing else does.
    if not confirmed and succeeded and f.result.reason_code not in STOPS:
        return f"decided REJECTED ({f.result.reason_code}), yet every step succeeded"
    return True


def rejected_undoes_every_started_step(f: Finished) -> Verdict:
    """After REJECTED, every step with an undo that started (it may have taken effect) is
    undone, or skipped by an operator with a reason, or FAILED under continue_with_error."""
    if f.result.status is not Outcome.REJECTED:
        return False
    reports = {r.name: r for r in f.result.compensations}
    if f.child_result is not None:
        reports.update({r.name: r for r in f.child_result.compensations})
    for call in f.plan.calls():
        if call.slot[0] not in "ulgc" or not _has(f.ledger, "start", call.slot):
            continue
        if _has(f.ledger, "undone", call.slot):
            continue
        report = reports.get(f"undo_{call.slot}")
        if report is None and f.swept and call.slot[0] == "l":
            # The documented limit of the sweep (docs/saga.md, "The limit"): a local step
            # in a workflow task that never completed left no event, so the new run knows
            # nothing of it; a saga with local steps keeps a finder for them.
            continue
        if report is not None and report.state is CompensationState.SKIPPED and report.skip_reason:
            continue
        if (
            report is not None
            and report.state is CompensationState.FAILED
            and f.plan.continue_with_error
        ):
            continue
        state = report.state.value if report else "not registered"
        return f"step {call.slot} started and was not undone ({state})"
    return True


def left_undone(plan: Plan, ledger: Ledger) -> list[str]:
    """The steps with an undo that started and were never undone: what a saga that ended
    without a decision (cancelled, failed) left behind."""
    return [
        call.slot
        for call in plan.calls()
        if call.slot[0] in "ulgc" and _has(ledger, "start", call.slot)
        if not _has(ledger, "undone", call.slot)
    ]


def compensations_run_newest_first(f: Finished) -> Verdict:
    """Run one after the other, compensations start newest first: a group's members after
    the steps that followed it (the last called first), a nested saga's at its place, and
    the nested saga's own newest first too."""
    if f.plan.parallel or f.result.status is not Outcome.REJECTED:
        return False
    child = f.plan.child_stage
    child_slots = {call.slot for call in child.calls} if child else set()
    names: list[str] = []
    for stage in f.plan.stages:
        if stage.kind == "child":
            names.append("child")
        else:
            names += [f"undo_{call.slot}" for call in stage.calls if call.slot[0] in "ulg"]
    wrong = _newest_first(
        f.result, names, f.ledger, lambda slot: "child" if slot in child_slots else f"undo_{slot}"
    )
    if wrong is None and child is not None and f.child_result is not None:
        child_names = [f"undo_{call.slot}" for call in child.calls]
        wrong = _newest_first(
            f.child_result,
            child_names,
            [entry for entry in f.ledger if entry[1] in child_slots],
            lambda slot: f"undo_{slot}",
        )
    return wrong or True


def _newest_first(
    result: SagaResult, declared: list[str], ledger: Ledger, name_of: Callable[[str], str]
) -> str | None:
    registered = [r.name for r in result.compensations]
    expected = [name for name in reversed(declared) if name in registered]
    if registered != expected:
        return f"compensations registered as {registered}, expected {expected}"
    started: list[str] = []
    for what, slot, _ in ledger:
        name = name_of(slot)
        if what == "undo" and name in registered and name not in started:
            started.append(name)
    if started != [name for name in registered if name in started]:
        return f"compensations started as {started}, registered newest first as {registered}"
    return None


def nothing_undone_once_confirmed(f: Finished) -> Verdict:
    """Once CONFIRMED, no undo runs: not the saga's, not its nested saga's."""
    if f.result.status is not Outcome.CONFIRMED:
        return False
    undone = [slot for what, slot, _ in f.ledger if what == "undo"]
    return f"CONFIRMED, and undos ran: {undone}" if undone else True


def no_step_starts_after_a_stop(f: Finished) -> Verdict:
    """No step is scheduled after a cancel or the deadline stopped the saga before its pivot
    (in a later workflow task than the one that took the stop)."""
    history = History(f.events)
    stop = history.stop(deadline=f.plan.deadline_seconds is not None)
    if stop is None:
        return False
    late = [name for task, name in history.scheduled() if task > stop and name.startswith("do_")]
    return f"steps scheduled after the stop: {late}" if late else True


def a_cancel_is_refused_from_the_pivot_on(f: Finished) -> Verdict:
    """No cancel update is accepted once the pivot started (in a later workflow task), and
    a Temporal cancellation then does not reject the saga."""
    history = History(f.events)
    pivot = history.pivot()
    if pivot is None:
        return False
    for task, name in history.accepted_updates():
        if name == "cancel" and task > pivot:
            return (
                f"a cancel update was accepted in workflow task {task}, after the pivot's {pivot}"
            )
    cancelled = history.cancel_requested()
    if f.result.reason_code == "cancelled" and cancelled is not None and cancelled > pivot:
        return "a Temporal cancellation after the pivot rejected the saga"
    return True


def status_search_attributes_and_result_agree(f: Finished) -> Verdict:
    """At the end, the status query, the SagaStatus search attribute and the result say the
    same decision."""
    wanted = f.result.status.value
    if f.status_query != wanted or f.status_attribute != wanted:
        return (
            f"result {wanted}, status query {f.status_query}, search attribute {f.status_attribute}"
        )
    return True


def no_workflow_task_fails(f: Finished) -> Verdict:
    """No workflow task failed, in the saga or its nested saga (a bug in the engine would)."""
    for events in (f.events, f.child_events):
        for event in events:
            if event.event_type != EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
                continue
            failed = event.workflow_task_failed_event_attributes
            # The server's, not the code's: a completion that raced a new signal (the task
            # runs again with it), and the reset the sweep makes.
            if failed.cause in SERVER_CAUSES:
                continue
            return f"workflow task failed at event {event.event_id}: {failed.failure.message[:200]}"
    return True


def every_history_replays(f: Finished) -> Verdict:
    """The histories replay with the current code."""
    return f.replay_error or True


RULES: list[Rule] = [
    confirmed_iff_the_pivot_succeeded,
    rejected_undoes_every_started_step,
    compensations_run_newest_first,
    nothing_undone_once_confirmed,
    no_step_starts_after_a_stop,
    a_cancel_is_refused_from_the_pivot_on,
    status_search_attributes_and_result_agree,
    no_workflow_task_fails,
    every_history_replays,
]


def judge(f: Finished) -> tuple[list[str], list[tuple[str, str]]]:
    """The rules that had something to check, and the violations (rule, words)."""
    checked, broken = [], []
    for rule in RULES:
        verdict = rule(f)
        if verdict is False:
            continue
        checked.append(rule.__name__)
        if isinstance(verdict, str):
            broken.append((rule.__name__, verdict))
    return checked, broken


# -- reading a history -----------------------------------------------------------------------


class History:
    """A history by workflow task: the task whose commands made an event (a scheduled
    activity, an accepted update), or the first task that saw it (a cancel, a timer). Tasks
    are numbered as they completed: an attempt that failed or timed out (a busy worker, a
    worker with no cache) made nothing, and what it saw is seen again by the next attempt."""

    def __init__(self, events: list[HistoryEvent]) -> None:
        self.events = events
        # For each event, the tasks completed up to it (its own, if a task's command made it).
        self._completed: list[int] = []
        # For each event, the task that first took it: the next attempt that started after it
        # and completed.
        self._taken: list[int] = [0] * len(events)
        completed = 0
        waiting: list[int] = []  # events no completing attempt started after yet
        started_after: list[int] = []  # of them, those before the attempt in flight
        for i, event in enumerate(events):
            kind = event.event_type
            if kind == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
                started_after, waiting = started_after + waiting, []
            elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
                completed += 1
                for seen in started_after:
                    self._taken[seen] = completed
                started_after = []
            elif kind in (
                EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED,
                EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT,
            ):
                waiting, started_after = started_after + waiting, []
            self._completed.append(completed)
            waiting.append(i)
        for seen in started_after + waiting:
            self._taken[seen] = completed + 1  # no task completed after it

    def made_by(self, index: int) -> int:
        return self._completed[index]

    def seen_by(self, index: int) -> int:
        return self._taken[index]

    def scheduled(self) -> list[tuple[int, str]]:
        return [
            (self.made_by(i), e.activity_task_scheduled_event_attributes.activity_type.name)
            for i, e in enumerate(self.events)
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        ]

    def accepted_updates(self) -> list[tuple[int, str]]:
        return [
            (
                self.made_by(i),
                e.workflow_execution_update_accepted_event_attributes.accepted_request.input.name,
            )
            for i, e in enumerate(self.events)
            if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
        ]

    def pivot(self) -> int | None:
        return next((task for task, name in self.scheduled() if name == f"do_{PIVOT}"), None)

    def cancel_requested(self) -> int | None:
        return next(
            (
                self.seen_by(i)
                for i, e in enumerate(self.events)
                if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED
            ),
            None,
        )

    def stop(self, *, deadline: bool) -> int | None:
        """The workflow task that took a stop (a cancel, the deadline) before its pivot
        started; None if none did."""
        stops = [task for task, name in self.accepted_updates() if name == "cancel"]
        cancelled = self.cancel_requested()
        if cancelled is not None:
            stops.append(cancelled)
        if deadline:
            timer = next(
                (
                    e.timer_started_event_attributes.timer_id
                    for e in self.events
                    if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED
                ),
                None,
            )
            stops += [
                self.seen_by(i)
                for i, e in enumerate(self.events)
                if e.event_type == EventType.EVENT_TYPE_TIMER_FIRED
                and e.timer_fired_event_attributes.timer_id == timer
            ]
        pivot = self.pivot()
        before_pivot = [task for task in stops if pivot is None or task < pivot]
        return min(before_pivot, default=None)
