"""What a checkout costs Temporal, counted from recorded histories: events, workflow tasks, and
Temporal Cloud's billable actions.

The counting rule is Temporal Cloud's, as https://docs.temporal.io/evaluate/cloud/actions
lists it, applied to the events of a history (docs/performance.md, "Cost per checkout"):

- WorkflowExecutionStarted: 1, but 0 where the start is counted elsewhere: a child's (the
  parent's StartChildWorkflowExecutionInitiated counts it), a continue-as-new's (the previous
  run's WorkflowExecutionContinuedAsNew counts it), a signal-with-start's (one action in all,
  counted by its WorkflowExecutionSignaled: event 2 of the history).
- WorkflowExecutionContinuedAsNew: 1.
- StartChildWorkflowExecutionInitiated: 2 (the intent, and the child's start).
- ActivityTaskScheduled: 1; and 1 per retry (the ActivityTaskStarted's attempt - 1).
- MarkerRecorded of local activities: 1 per workflow task that recorded any, whatever their
  number; plus the retries its WorkflowTaskCompleted's metering metadata reports.
- TimerStarted: 1.
- UpsertWorkflowSearchAttributes: 1 (0 when it sets only TemporalChangeVersion).
- WorkflowExecutionSignaled: 1 (from a client, a workflow, or a signal-with-start).
- WorkflowExecutionUpdateAccepted: 1 (with update-with-start, beside the start's 1).
- WorkflowExecutionOptionsUpdated: 1; WorkflowTaskFailed with the reset cause: 1.

Not in a history, so not counted: queries, activity heartbeats, workflow task heartbeats,
rejected updates, schedules. The dev server counts what it does in its `action` metric
(`action_type` label), which the bench reads to check this rule (`server_actions`).
"""

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause
from temporalio.api.history.v1 import HistoryEvent

LOCAL_ACTIVITY_MARKER = "core_local_activity"
CHANGE_VERSION_ATTRIBUTE = "TemporalChangeVersion"
# One sample line of the server's Prometheus text: `action{action_type="...",...} 12`.
_ACTION_LINE = re.compile(r"^action\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)\s*$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')

E = EventType


@dataclass
class HistoryCost:
    """One or more histories' events, workflow tasks and actions (by kind)."""

    events: int = 0
    workflow_tasks: int = 0
    signals: int = 0
    actions: Counter[str] = field(default_factory=Counter)

    @property
    def total_actions(self) -> int:
        return sum(self.actions.values())

    def __add__(self, other: "HistoryCost") -> "HistoryCost":
        return HistoryCost(
            self.events + other.events,
            self.workflow_tasks + other.workflow_tasks,
            self.signals + other.signals,
            self.actions + other.actions,
        )


def history_cost(events: Sequence[HistoryEvent]) -> HistoryCost:
    """The cost of one run's history by the rule above."""
    actions: Counter[str] = Counter()
    marker_tasks: set[int] = set()
    workflow_tasks = 0
    for index, event in enumerate(events):
        kind = event.event_type
        if kind == E.EVENT_TYPE_WORKFLOW_TASK_STARTED:
            workflow_tasks += 1
        elif kind == E.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            if _start_counted_here(event, events[index + 1] if index + 1 < len(events) else None):
                actions["start_workflow"] += 1
        elif kind == E.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
            actions["continue_as_new"] += 1
        elif kind == E.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
            actions["start_child_workflow"] += 2
        elif kind == E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            actions["schedule_activity"] += 1
        elif kind == E.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            retries = event.activity_task_started_event_attributes.attempt - 1
            if retries > 0:
                actions["retry_activity"] += retries
        elif kind == E.EVENT_TYPE_MARKER_RECORDED:
            marker = event.marker_recorded_event_attributes
            if marker.marker_name == LOCAL_ACTIVITY_MARKER:
                marker_tasks.add(marker.workflow_task_completed_event_id)
        elif kind == E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            metering = event.workflow_task_completed_event_attributes.metering_metadata
            if metering.nonfirst_local_activity_execution_attempts:
                actions["retry_local_activity"] += (
                    metering.nonfirst_local_activity_execution_attempts
                )
        elif kind == E.EVENT_TYPE_TIMER_STARTED:
            actions["start_timer"] += 1
        elif kind == E.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            fields = event.upsert_workflow_search_attributes_event_attributes.search_attributes
            if set(fields.indexed_fields) != {CHANGE_VERSION_ATTRIBUTE}:
                actions["upsert_search_attributes"] += 1
        elif kind == E.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            actions["signal"] += 1
        elif kind == E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            actions["accept_update"] += 1
        elif kind == E.EVENT_TYPE_WORKFLOW_EXECUTION_OPTIONS_UPDATED:
            actions["update_workflow_options"] += 1
        elif kind == E.EVENT_TYPE_WORKFLOW_TASK_FAILED:
            cause = event.workflow_task_failed_event_attributes.cause
            if cause == WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_RESET_WORKFLOW:
                actions["reset_workflow"] += 1
    if marker_tasks:
        actions["local_activities"] += len(marker_tasks)
    return HistoryCost(
        events=len(events),
        workflow_tasks=workflow_tasks,
        signals=actions["signal"],
        actions=actions,
    )


def _start_counted_here(started: HistoryEvent, following: HistoryEvent | None) -> bool:
    attributes = started.workflow_execution_started_event_attributes
    if attributes.HasField("parent_workflow_execution"):
        return False  # the parent's StartChildWorkflowExecutionInitiated counts it
    if attributes.continued_execution_run_id:
        return False  # the previous run's WorkflowExecutionContinuedAsNew counts it
    # A signal-with-start that started the workflow writes its signal right after the start,
    # before the first workflow task: the pair is one action, counted by the signal.
    return following is None or following.event_type != E.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED


def total_cost(histories: Iterable[Sequence[HistoryEvent]]) -> HistoryCost:
    total = HistoryCost()
    for events in histories:
        total = total + history_cost(events)
    return total


def events_between(
    events: Sequence[HistoryEvent], start_seconds: float, end_seconds: float
) -> list[HistoryEvent]:
    """The events of a long-lived workflow stamped within [start, end] (Unix seconds): its
    share of a window of checkouts."""
    return [
        e for e in events if start_seconds <= e.event_time.ToMicroseconds() / 1e6 <= end_seconds
    ]


@dataclass
class CheckoutCost:
    """Per checkout: its own history and its jobs' (the mean over the sample), and its share
    of the long-lived consumers' (their events over the signals they received, times the one
    signal each consumer gets per checkout)."""

    checkouts: int
    events: float
    workflow_tasks: float
    actions: float
    actions_by_kind: dict[str, float]
    parts: dict[str, dict[str, float]]


def per_checkout(
    checkouts: int, own: HistoryCost, consumers: Mapping[str, HistoryCost]
) -> CheckoutCost:
    """`own`: the sampled checkouts' histories and their jobs', summed; `consumers`: per
    long-lived consumer type, its histories (or their events in the sample's window)."""
    parts: dict[str, tuple[HistoryCost, float]] = {"checkout_and_jobs": (own, float(checkouts))}
    for name, cost in consumers.items():
        if cost.signals:
            parts[name] = (cost, float(cost.signals))
    by_kind: dict[str, float] = {}
    figures: dict[str, dict[str, float]] = {}
    for name, (cost, per) in parts.items():
        figures[name] = {
            "events": round(cost.events / per, 3),
            "workflow_tasks": round(cost.workflow_tasks / per, 3),
            "actions": round(cost.total_actions / per, 3),
        }
        for kind, count in cost.actions.items():
            by_kind[kind] = by_kind.get(kind, 0.0) + count / per
    return CheckoutCost(
        checkouts=checkouts,
        events=round(sum(p["events"] for p in figures.values()), 2),
        workflow_tasks=round(sum(p["workflow_tasks"] for p in figures.values()), 2),
        actions=round(sum(p["actions"] for p in figures.values()), 2),
        actions_by_kind={kind: round(value, 3) for kind, value in sorted(by_kind.items())},
        parts=figures,
    )


def server_actions(metrics_text: str, namespace: str = "default") -> dict[str, float]:
    """The dev server's `action` counter in `namespace`, by `action_type`, from its Prometheus
    text (the `temporal_system` namespace's own work left out)."""
    found: dict[str, float] = {}
    for line in metrics_text.splitlines():
        match = _ACTION_LINE.match(line)
        if match is None:
            continue
        labels = dict(_LABEL.findall(match["labels"]))
        if labels.get("namespace") != namespace:
            continue
        kind = labels.get("action_type", "")
        found[kind] = found.get(kind, 0.0) + float(match["value"])
    return found


def actions_delta(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    """What the counter counted between two readings, by action type (none: left out)."""
    return {
        kind: after[kind] - before.get(kind, 0.0)
        for kind in sorted(after)
        if after[kind] - before.get(kind, 0.0) > 0
    }
