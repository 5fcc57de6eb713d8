"""`checkout-saga bench --sustained`: the open-loop clock, the capacity rule, the action
counting rule, and one short real run whose every figure is there and makes sense.

Not the targets (those depend on the machine; docs/performance.md "Sustained load").
"""

import asyncio
import json
import subprocess
from pathlib import Path

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from temporalio.api.common.v1 import (
    MeteringMetadata,
    Payload,
    SearchAttributes,
    WorkflowExecution,
)
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import (
    ActivityTaskStartedEventAttributes,
    HistoryEvent,
    MarkerRecordedEventAttributes,
    UpsertWorkflowSearchAttributesEventAttributes,
    WorkflowExecutionStartedEventAttributes,
    WorkflowTaskCompletedEventAttributes,
)
from temporalio.client import WorkflowHistory

from harness.bench.cost import (
    HistoryCost,
    actions_delta,
    events_between,
    history_cost,
    per_checkout,
    server_actions,
)
from harness.bench.openloop import NO_ANSWER, OpenLoop
from harness.bench.postgres import PostgresUnavailable, postgres_bin_dir
from harness.bench.sustained import (
    MORE_RATES_AT_MOST,
    ROLES,
    StepFigures,
    capacity,
    cost_steps,
    held,
    ladder,
    p50_ratio,
)
from tests.support.harness import run_harness

HISTORIES = Path(__file__).parents[1] / "histories"
E = EventType
LOCAL = "core_local_activity"


class FakeClock:
    """Time moves only when the generator sleeps (or a call says so)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0)  # the calls started so far run first, at the current time
        self.now += seconds


async def test_the_open_loop_keeps_its_clock_when_a_call_stalls() -> None:
    clock = FakeClock()
    release = asyncio.Event()

    async def call(order_id: str) -> bool:
        if order_id == "o0":
            await release.wait()  # the first call stalls until released
        return True

    load = OpenLoop(call, [f"o{i}" for i in range(10)], rate=10, clock=clock, sleep=clock.sleep)
    await load.run_arrivals()
    # Every arrival started when due, the stalled one still out meanwhile.
    assert [round(a.due, 3) for a in load.arrivals] == [i / 10 for i in range(10)]
    assert [a.late for a in load.arrivals] == pytest.approx([0.0] * 10, abs=1e-9)
    assert load.pending() == 1 and load.arrivals[0].answered is None
    assert [a.latency for a in load.arrivals[1:]] == pytest.approx([0.0] * 9, abs=1e-9)
    assert load.end == pytest.approx(1.0)
    clock.now = 5.0
    release.set()
    await load.wait_answers(limit=5)
    assert load.arrivals[0].latency == 5.0  # from its due time, 0


async def test_latency_counts_from_the_due_time_when_the_generator_falls_behind() -> None:
    clock = FakeClock()

    async def call(order_id: str) -> bool:
        if order_id == "o3":
            clock.now += 1.0  # the event loop held up for a second (a stalled generator)
        return True

    load = OpenLoop(call, [f"o{i}" for i in range(8)], rate=10, clock=clock, sleep=clock.sleep)
    await load.run_arrivals()
    await load.wait_answers(limit=5)
    arrivals = load.arrivals
    # The schedule stays the clock's: o4 was due at 0.4 whenever it started.
    assert [round(a.due, 3) for a in arrivals] == [i / 10 for i in range(8)]
    assert [round(a.latency or 0, 3) for a in arrivals[:3]] == [0.0, 0.0, 0.0]
    assert round(arrivals[3].latency or 0, 3) == 1.0
    # o4 and after started late, their calls answered at once: the lateness is their latency.
    for arrival in arrivals[4:]:
        assert arrival.started is not None and arrival.answered == arrival.started
        assert arrival.late is not None and arrival.late > 0.5
        assert arrival.latency == arrival.late


async def test_an_answer_that_never_comes_is_an_error() -> None:
    never = asyncio.Event()

    async def call(order_id: str) -> bool:
        if order_id == "lost":
            await never.wait()
            return True
        return order_id != "refused"

    load = OpenLoop(call, ["ok", "lost", "refused"], rate=1000)
    await load.run_arrivals()
    await load.wait_answers(limit=0.1)
    ok, lost, refused = load.arrivals
    assert ok.ok and ok.latency is not None
    assert lost.error == f"lost: {NO_ANSWER}" and lost.latency is None
    assert refused.error == "refused: not confirmed" and refused.latency is None


def step(rate: float, p99_ms: float, drain: float | None, errors: int = 0) -> StepFigures:
    checkouts = round(rate * 60)
    figures = StepFigures(
        mode="checkout",
        rate=rate,
        checkouts=checkouts,
        answered=checkouts - errors,
        errors=errors,
        first_errors=[],
        offered_per_second=rate,
        achieved_per_second=rate,
        p50_ms=p99_ms / 3,
        p95_ms=p99_ms / 2,
        p99_ms=p99_ms,
        generator_late_max_ms=1.0,
        slowest=[],
        backlog_age_max_s=0.0,
        backlog_age_end_s=0.0,
        closed_per_second=rate,
        drain_seconds=drain,
        seconds=60.0,
        cpu_cores={},
        cpu_s_per_checkout={},
        server_actions_per_checkout=None,
        server_actions_by_type={},
        held=False,
    )
    figures.held = held(figures, p99_limit_ms=1000, drain_limit_seconds=30)
    return figures


def test_the_cost_comes_from_the_lowest_rate_and_the_cpu_from_the_capacity() -> None:
    ladder = [step(4, 400, 2.0), step(2, 200, 1.0), step(6, 2000, 3.0)]
    lowest, cpu = cost_steps(ladder, capacity(ladder)[0])
    assert (lowest.rate, cpu.rate) == (2, 4)
    missed = [step(2, 2000, 1.0), step(4, 3000, 2.0)]  # nothing held: the lowest for both
    lowest, cpu = cost_steps(missed, capacity(missed)[0])
    assert (lowest.rate, cpu.rate) == (2, 2)


def test_the_ladder_goes_on_past_the_rates_given_by_their_last_step() -> None:
    rates = list(ladder([2.0, 4.0, 6.0]))
    assert rates[:3] == [2.0, 4.0, 6.0]
    assert rates[3:6] == [8.0, 10.0, 12.0]
    assert len(rates) == 3 + MORE_RATES_AT_MOST  # bounded
    assert list(ladder([5.0]))[:3] == [5.0, 10.0, 15.0]


def test_capacity_is_the_highest_rate_held() -> None:
    table = [
        step(2, 200, 1.0),
        step(4, 400, 2.0),
        step(6, 1000, 29.9),  # at both limits: held
        step(8, 1001, 3.0),  # p99 over 1 s
        step(10, 300, 31.0),  # work done too late
    ]
    assert [s.held for s in table] == [True, True, True, False, False]
    assert capacity(table) == (6, False)
    # Errors, a missing answer or work never done: not held.
    assert not step(2, 100, 1.0, errors=1).held
    assert not step(2, 100, None).held
    # The top rate held: the capacity may be higher than the ladder reached.
    assert capacity(table[:3]) == (6, True)
    assert capacity([step(2, 2000, 1.0)]) == (None, False)
    # Literally the highest held, even above a rate that missed (a noisy step).
    assert capacity([step(2, 100, 1), step(4, 1500, 1), step(6, 100, 1)]) == (6, True)


def test_the_p50_ratio_is_the_median_over_the_rates_both_held() -> None:
    checkout = [step(2, 300, 1), step(4, 600, 1), step(6, 900, 1)]
    dbos = [step(2, 150, 1), step(4, 300, 1), step(6, 3000, 1)]  # DBOS missed 6/s
    assert p50_ratio(checkout, dbos) == 2.0
    assert p50_ratio(checkout, []) is None


def recorded(name: str) -> WorkflowHistory:
    return WorkflowHistory.from_json(name, (HISTORIES / f"{name}.json").read_text())


def test_actions_of_a_recorded_confirmed_checkout() -> None:
    checkout = history_cost(recorded("confirmed").events)
    assert checkout.actions == {
        "start_workflow": 1,  # update-with-start: the start...
        "accept_update": 1,  # ...and the update
        "upsert_search_attributes": 6,
        "start_timer": 1,  # the deadline
        "local_activities": 2,  # four steps in one workflow task, two signals in another
        "schedule_activity": 1,  # the commit
        "start_child_workflow": 4,  # two jobs, two actions each
    }
    receipt = history_cost(recorded("receipt-job").events)
    assert receipt.actions == {"local_activities": 1}  # its start is the parent's
    loyalty = history_cost(recorded("loyalty").events)
    # Started by signal-with-start: one action in all, the signal's.
    assert loyalty.actions == {"signal": 1, "local_activities": 1}
    assert loyalty.signals == 1
    cost = per_checkout(
        1,
        checkout + receipt + history_cost(recorded("shipping-job").events),
        {"loyalty": loyalty, "analytics": history_cost(recorded("analytics").events)},
    )
    # What the dev server's own counter says of one confirmed checkout (22, by type:
    # ExecuteMultiOperation 1, UpdateWorkflowExecution acceptance 1, upserts 6, timer 1,
    # markers 6 batches, activity 1, child starts 2 + 2, signal-with-starts 2).
    assert cost.actions == 22
    assert cost.events == 34 + 6 + 6 + 6 + 6
    assert cost.workflow_tasks == 3 + 1 + 1 + 1 + 1


def event(event_id: int, kind: int, **attributes: object) -> HistoryEvent:
    stamp = Timestamp()
    stamp.FromSeconds(1000 + event_id)
    return HistoryEvent(event_id=event_id, event_type=kind, event_time=stamp, **attributes)  # type: ignore[arg-type]


def test_the_counting_rule_on_a_hand_made_history() -> None:
    version = SearchAttributes(indexed_fields={"TemporalChangeVersion": Payload()})
    status = SearchAttributes(indexed_fields={"SagaStatus": Payload()})
    events = [
        event(1, E.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED),
        event(2, E.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED),
        event(3, E.EVENT_TYPE_WORKFLOW_TASK_STARTED),
        event(
            4,
            E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
            workflow_task_completed_event_attributes=WorkflowTaskCompletedEventAttributes(
                metering_metadata=MeteringMetadata(nonfirst_local_activity_execution_attempts=2)
            ),
        ),
        *(
            event(
                n,
                E.EVENT_TYPE_MARKER_RECORDED,
                marker_recorded_event_attributes=MarkerRecordedEventAttributes(
                    marker_name=name, workflow_task_completed_event_id=4
                ),
            )
            for n, name in (
                (5, "core_local_activity"),
                (6, "core_local_activity"),
                (7, "core_patch"),
            )
        ),
        event(
            8,
            E.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES,
            upsert_workflow_search_attributes_event_attributes=(
                UpsertWorkflowSearchAttributesEventAttributes(search_attributes=status)
            ),
        ),
        event(
            9,
            E.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES,
            upsert_workflow_search_attributes_event_attributes=(
                UpsertWorkflowSearchAttributesEventAttributes(search_attributes=version)
            ),
        ),
        event(10, E.EVENT_TYPE_TIMER_STARTED),
        event(11, E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED),
        event(
            12,
            E.EVENT_TYPE_ACTIVITY_TASK_STARTED,
            activity_task_started_event_attributes=ActivityTaskStartedEventAttributes(attempt=3),
        ),
        event(13, E.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED),
        event(14, E.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED),
        event(15, E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED),
        event(16, E.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED),  # the target's
        event(17, E.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW),
    ]
    cost = history_cost(events)
    assert cost.actions == {
        "start_workflow": 1,
        "retry_local_activity": 2,
        "local_activities": 1,  # two markers of one workflow task; a patch marker is none
        "upsert_search_attributes": 1,  # TemporalChangeVersion alone is exempt
        "start_timer": 1,
        "schedule_activity": 1,
        "retry_activity": 2,  # the third attempt
        "start_child_workflow": 2,
        "signal": 1,
        "accept_update": 1,
        "continue_as_new": 1,
    }
    assert (cost.events, cost.workflow_tasks, cost.signals, cost.total_actions) == (17, 1, 1, 14)

    # Starts counted elsewhere: a child's (by its parent), a continued run's (by the run it
    # continues), a signal-with-start's (its signal).
    child = WorkflowExecutionStartedEventAttributes(
        parent_workflow_execution=WorkflowExecution(workflow_id="parent")
    )
    continued = WorkflowExecutionStartedEventAttributes(continued_execution_run_id="run-1")
    for attributes in (child, continued):
        started = event(1, E.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED)
        started.workflow_execution_started_event_attributes.CopyFrom(attributes)
        assert history_cost([started, event(2, E.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED)]).actions == {}
    signal_with_start = [
        event(1, E.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED),
        event(2, E.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED),
    ]
    assert history_cost(signal_with_start).actions == {"signal": 1}
    # A long-lived workflow's share of a window: its events stamped within it.
    assert [e.event_id for e in events_between(events, 1005, 1007)] == [5, 6, 7]


def test_the_servers_action_counter_is_read_by_type() -> None:
    text = "\n".join(
        [
            "# HELP action action counter",
            "# TYPE action counter",
            'action{action_type="grpc_StartWorkflowExecution",namespace="temporal_system",'
            'operation="StartWorkflowExecution",service_name="frontend"} 2',
            'action{action_type="grpc_ExecuteMultiOperation",namespace="default",'
            'operation="ExecuteMultiOperation",service_name="frontend"} 5',
            'action{action_type="command_BatchMarkers",namespace="default",'
            'operation="RespondWorkflowTaskCompleted",service_name="history"} 30',
            'actions_other{namespace="default"} 7',
        ]
    )
    before = server_actions(text)
    assert before == {"grpc_ExecuteMultiOperation": 5.0, "command_BatchMarkers": 30.0}
    after = {**before, "command_BatchMarkers": 36.0, "command_StartTimer": 1.0}
    assert actions_delta(before, after) == {"command_BatchMarkers": 6.0, "command_StartTimer": 1.0}
    assert HistoryCost().total_actions == 0


def _postgres_installed() -> bool:
    try:
        postgres_bin_dir()
    except PostgresUnavailable:
        return False
    return True


@pytest.mark.slow  # a whole stack, DBOS and Postgres included
@pytest.mark.timeout(120)
def test_sustained_json_has_every_figure(tmp_path: Path) -> None:
    modes = ["checkout", "twin", *(["dbos"] if _postgres_installed() else [])]
    rate, hold = 3.0, 4.0
    # --keep-going: that one rate only (without it, a mode that holds it goes on to find its
    # capacity).
    args = ["--sustained", "--json", "--keep-going", "--rate", str(rate)]
    args += ["--hold-seconds", str(hold), "--data-dir", str(tmp_path)]
    for mode in modes:
        args += ["--mode", mode]
    done = run_harness("harness.bench", *args, timeout=110)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, done.stdout
    report = json.loads(lines[0])

    config = report["config"]
    assert (config["rates"], config["hold_seconds"], config["modes"]) == ([rate], hold, modes)
    assert report["capacity_rule"] == {
        "p99_ms_at_most": 1000.0,
        "drain_seconds_at_most": 30.0,
        "hold_seconds": hold,
        "as_defined": False,  # not held for a minute
    }
    assert report["skipped"] == {}
    checkouts = round(rate * hold)
    for mode in modes:
        figures = report[mode]
        [only] = figures["steps"]
        assert (only["mode"], only["rate"], only["checkouts"]) == (mode, rate, checkouts)
        assert only["errors"] == 0, only["first_errors"]
        assert only["answered"] == checkouts
        assert abs(only["offered_per_second"] - rate) < 0.01
        assert 0 < only["achieved_per_second"] < 2 * rate
        assert 0 < only["p50_ms"] <= only["p95_ms"] <= only["p99_ms"] < 30_000
        assert 0 <= only["generator_late_max_ms"] < 1000, "the generator fell behind"
        slowest = only["slowest"]
        assert len(slowest) == 5 and slowest[0][1] >= only["p99_ms"]  # the worst one first
        assert [s[1] for s in slowest] == sorted((s[1] for s in slowest), reverse=True)
        assert all(0 <= at < hold for at, _ in slowest)
        assert only["backlog_age_max_s"] is not None and only["backlog_age_max_s"] >= 0
        assert only["backlog_age_end_s"] is not None and only["backlog_age_end_s"] >= 0
        assert only["closed_per_second"] is not None and only["closed_per_second"] >= 0
        assert only["drain_seconds"] is not None and 0 <= only["drain_seconds"] <= 30
        assert set(only["cpu_cores"]) == {*ROLES, "other"}
        assert all(value >= 0 for value in only["cpu_cores"].values())
        cpu = only["cpu_s_per_checkout"]
        assert set(cpu) == {*ROLES, "total"}
        assert cpu["server"] > 0 and cpu["worker"] > 0 and cpu["total"] > 0
        assert only["held"] == (only["p99_ms"] <= 1000)
        assert figures["capacity_per_second"] == (rate if only["held"] else None)
        assert figures["capped"] == only["held"]
        cost = figures["cost"]
        assert (cost["rate"], cost["cpu_rate"]) == (rate, rate)
        assert cost["cpu_s_per_checkout"] == cpu
        if mode == "dbos":
            assert only["server_actions_per_checkout"] is None
            assert cost["history"] is None
            continue
        history = cost["history"]
        assert history["checkouts"] == checkouts
        assert set(history["parts"]) == {"checkout_and_jobs", *CONSUMER_TYPES[mode]}
        assert history["events"] > 40 and history["workflow_tasks"] >= 5
        assert history["actions"] == pytest.approx(sum(history["actions_by_kind"].values()), 0.01)
        # The counting rule agrees with the server's own counter over the same step.
        assert only["server_actions_per_checkout"] == cost["server_actions_per_checkout"]
        assert abs(history["actions"] - cost["server_actions_per_checkout"]) < 0.5, (
            history,
            cost["server_actions_by_type"],
        )
        assert cost["server_actions_by_type"]["grpc_ExecuteMultiOperation"] == 1
    # Same shape, same actions.
    assert report["checkout"]["cost"]["history"]["actions_by_kind"].keys() == (
        report["twin"]["cost"]["history"]["actions_by_kind"].keys()
    )
    ratios = report["ratios"]
    assert {"checkout_vs_twin_capacity", "checkout_vs_twin_actions"} <= set(ratios)
    assert 0.9 < ratios["checkout_vs_twin_actions"] < 1.1
    if "dbos" in modes:
        assert {"checkout_vs_dbos_p50", "checkout_vs_dbos_capacity"} <= set(ratios)
    assert set(report["targets_met"]) <= set(ratios)
    # Every process the bench started with the data dir in its command line has stopped.
    pids = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True)
    assert pids.stdout.strip() == "", f"left running: {pids.stdout}"


CONSUMER_TYPES = {
    "checkout": ("CustomerLoyalty", "Analytics"),
    "twin": ("BenchTwinLoyalty", "BenchTwinAnalytics"),
}
