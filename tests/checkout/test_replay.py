"""Replay: recorded histories still replay against today's code, and the net catches changes.

tests/histories/*.json are recorded by `python -m harness.histories capture` (one per path of
each saga, and of each fan-out workflow). A change to the workflow code that those histories
no longer replay against would break the sagas running at deploy time; guard it with
`workflow.patched`. The examples' sagas (the trip, the shipped order and its nested shipping)
replay against their own workers' workflows.
"""

import asyncio
import uuid
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner
from temporalio.workflow import NondeterminismError

from examples.shipping.models import OrderRequest, OrderResult
from examples.shipping.workflow import OrderWorkflow, ShippingWorkflow
from examples.trip.models import TripRequest, TripResult
from examples.trip.workflow import TripBookingWorkflow
from harness.histories import HISTORY_WORKFLOWS, PATHS
from models.checkout import CartItem, CheckoutRequest, checkout_workflow_id
from models.fanout import (
    ANALYTICS_WORKFLOW_TYPE,
    CUSTOMER_LOYALTY_WORKFLOW_TYPE,
    SEND_RECEIPT_WORKFLOW_TYPE,
    SHIP_ORDER_WORKFLOW_TYPE,
)
from models.payments import CARD_DECLINED, CARD_OK
from starter.checkouts import place_checkout
from starter.replay import (
    history_files,
    load_history,
    replay_files,
    replayer,
    workflow_type,
)
from temporal_saga.codec import data_converter
from temporal_saga.models import Outcome
from temporal_saga.reconcile import SWEEP_WORKFLOW
from temporal_saga.worker import sandbox_runner
from tests.support.cards import card_token
from tests.support.changed_checkout import PatchedFraudCheck, UnguardedFraudCheck
from tests.support.cli import run_cli
from tests.support.harness import run_harness
from tests.support.polling import eventually
from tests.support.stock import new_stocked_sku
from worker.runner import WORKFLOWS
from worker.settings import Settings
from workflows.checkout_repair import CHECKOUT_REPAIR

HISTORIES = Path(__file__).parents[1] / "histories"
RECORDED = history_files(HISTORIES)
CHECKOUTS = [p for p in RECORDED if workflow_type(load_history(p)) == "Checkout"]
TRIPS = [p for p in RECORDED if workflow_type(load_history(p)) == "TripBooking"]
# The examples' sagas, each on a worker of its own.
EXAMPLE_WORKFLOWS: list[type] = [TripBookingWorkflow, OrderWorkflow, ShippingWorkflow]
EXAMPLE_TYPES = {workflow._Definition.must_from_class(c).name for c in EXAMPLE_WORKFLOWS}
EXAMPLES = [p for p in RECORDED if workflow_type(load_history(p)) in EXAMPLE_TYPES]
ORDERS = [p for p in RECORDED if workflow_type(load_history(p)) == "ShippedOrder"]
CONFIRMED = HISTORIES / "confirmed.json"


def test_every_path_has_a_recorded_history() -> None:
    assert RECORDED, f"no histories in {HISTORIES}: run `python -m harness.histories capture`"
    missing = {p.name for p in PATHS} - {f.stem for f in RECORDED if f.parent == HISTORIES}
    capture = "python -m harness.histories capture"
    assert not missing, f"not recorded: {sorted(missing)}; run `{capture}`"


def example_replayer() -> Replayer:
    """The examples' sagas, in the sandbox of their own workers (saga_worker's): what the
    trip's and the shipping's workers (examples/*/worker.py) would run."""
    return Replayer(
        workflows=EXAMPLE_WORKFLOWS,
        data_converter=data_converter(),
        workflow_runner=sandbox_runner(),
    )


@pytest.mark.parametrize("path", RECORDED, ids=[str(p.relative_to(HISTORIES)) for p in RECORDED])
async def test_recorded_history_replays_against_current_workflows(path: Path) -> None:
    history = load_history(path)
    # The checkout worker's histories against its workflows; the examples' against theirs.
    against = example_replayer() if path in EXAMPLES else replayer()

    result = await against.replay_workflow(history, raise_on_replay_failure=False)

    assert result.replay_failure is None, f"{path.name}: {result.replay_failure!r}"


async def test_unguarded_change_fails_replay_with_nondeterminism_error() -> None:
    history = load_history(CONFIRMED)

    result = await replayer([UnguardedFraudCheck]).replay_workflow(
        history, raise_on_replay_failure=False
    )

    assert isinstance(result.replay_failure, NondeterminismError), repr(result.replay_failure)
    # Core's code for a command that does not match the recorded history.
    assert "[TMPRL1100] Nondeterminism error" in str(result.replay_failure)
    with pytest.raises(NondeterminismError):
        await replayer([UnguardedFraudCheck]).replay_workflow(history)


def test_every_kind_of_workflow_is_recorded() -> None:
    recorded = {workflow_type(load_history(p)) for p in RECORDED}
    expected = {
        "Checkout",
        SEND_RECEIPT_WORKFLOW_TYPE,
        SHIP_ORDER_WORKFLOW_TYPE,
        CUSTOMER_LOYALTY_WORKFLOW_TYPE,
        ANALYTICS_WORKFLOW_TYPE,
        "TripBooking",
        "ShippedOrder",
        "Shipping",
        SWEEP_WORKFLOW,
        CHECKOUT_REPAIR,
    }
    assert recorded == expected
    # A new workflow type, of the checkout's worker or an example's, needs its history too.
    registered = {workflow._Definition.must_from_class(cls).name for cls in HISTORY_WORKFLOWS}
    assert registered == recorded
    assert set(WORKFLOWS) < set(HISTORY_WORKFLOWS)
    assert set(EXAMPLE_WORKFLOWS) < set(HISTORY_WORKFLOWS)
    assert not EXAMPLE_TYPES & {workflow._Definition.must_from_class(c).name for c in WORKFLOWS}
    assert len(TRIPS) >= 4, "the example saga's paths are recorded too"
    assert len(ORDERS) >= 3, "the nested saga's parent paths are recorded too"


def activity_events(history: WorkflowHistory) -> list[tuple[str, str]]:
    """(what happened, to which activity) for the history's activity events, in order."""
    names: dict[int, str] = {}
    seen = []
    kinds = {
        EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED: ("completed", "activity_task_completed"),
        EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED: ("failed", "activity_task_failed"),
        EventType.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED: (
            "cancel requested",
            "activity_task_cancel_requested",
        ),
        EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED: ("cancelled", "activity_task_canceled"),
    }
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attributes = event.activity_task_scheduled_event_attributes
            names[event.event_id] = attributes.activity_type.name
            seen.append(("scheduled", attributes.activity_type.name))
        elif event.event_type in kinds:
            what, field = kinds[event.event_type]
            scheduled = getattr(event, f"{field}_event_attributes").scheduled_event_id
            seen.append((what, names[scheduled]))
    return seen


def test_the_trip_group_history_cancels_the_members_in_flight_and_undoes_all_three() -> None:
    """What trip-car-refused.json recorded: the car refused while the flight and the hotel
    were in flight; both cancelled before all three are undone, newest first."""
    events = activity_events(load_history(HISTORIES / "trip-car-refused.json"))

    assert events[:3] == [("scheduled", n) for n in ("book_flight", "book_hotel", "book_car")]
    refused = events.index(("failed", "book_car"))
    cancelled = [events.index(("cancel requested", n)) for n in ("book_flight", "book_hotel")]
    undone = [
        events.index(("completed", n)) for n in ("cancel_car", "cancel_hotel", "cancel_flight")
    ]
    assert refused < min(cancelled) and max(cancelled) < undone[0] < undone[1] < undone[2]
    assert not any(what == "completed" and name.startswith("book_") for what, name in events)


def test_the_nested_saga_histories_undo_the_child_before_the_parents_stock() -> None:
    """shipping-declined.json (the child) and shipped-order-declined.json (its parent): the
    child booked both carriers, then undid them newest first on its parent's word; the parent
    released its stock only once the child had told it that it ended."""
    child = load_history(HISTORIES / "shipping-declined.json")
    parent = load_history(HISTORIES / "shipped-order-declined.json")

    assert [name for what, name in activity_events(child) if what == "completed"] == [
        "book_pickup",
        "book_delivery",
        "cancel_delivery",
        "cancel_pickup",
    ]
    assert [name for what, name in activity_events(parent) if what == "scheduled"] == [
        "reserve_stock",
        "charge",
        "release_stock",
    ]
    signals = [
        e.workflow_execution_signaled_event_attributes.signal_name
        for e in parent.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
    ]
    assert set(signals) == {"child_saga_news"}
    last_news = max(
        e.event_id
        for e in parent.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
    )
    release = next(
        e.event_id
        for e in parent.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and e.activity_task_scheduled_event_attributes.activity_type.name == "release_stock"
    )
    assert last_news < release


# Unguarded changes to the examples, registered under their names: the car booked first in
# the trip's group; the shipping booked before the stock is reserved.
@workflow.defn(name="TripBooking")
class CarFirstTrip(TripBookingWorkflow):
    @workflow.run
    async def run(self, trip: TripRequest) -> TripResult:
        return await self.run_saga(self.car_first(trip))

    async def car_first(self, trip: TripRequest) -> None:
        await self.providers(self.book_car(trip), self.book_flight(trip), self.book_hotel(trip))
        await self.take_payment(trip)


@workflow.defn(name="ShippedOrder")
class ShippingFirstOrder(OrderWorkflow):
    @workflow.run
    async def run(self, order: OrderRequest) -> OrderResult:
        return await self.run_saga(self.shipping_first(order))

    async def shipping_first(self, order: OrderRequest) -> None:
        await self.shipping(order.shipment())
        await self.reserve_stock(order)
        await self.charge(order)


@pytest.mark.parametrize(
    ("changed", "histories"),
    [(CarFirstTrip, TRIPS), (ShippingFirstOrder, ORDERS)],
    ids=["trip", "shipped-order"],
)
async def test_unguarded_change_to_an_example_fails_its_recorded_histories(
    changed: type, histories: list[Path]
) -> None:
    # Out of the sandbox: these classes live in this test module, which it would re-import.
    against = Replayer(
        workflows=[changed, ShippingWorkflow],
        data_converter=data_converter(),
        workflow_runner=UnsandboxedWorkflowRunner(),
    )
    assert histories
    for path in histories:
        result = await against.replay_workflow(load_history(path), raise_on_replay_failure=False)
        assert isinstance(result.replay_failure, NondeterminismError), (path.name, result)


async def test_unguarded_change_fails_every_recorded_history() -> None:
    outcomes = await replay_files(CHECKOUTS, workflows=[UnguardedFraudCheck])

    assert len(outcomes) == len(CHECKOUTS) > 0
    errors = {o.source: o.error for o in outcomes}
    assert all(isinstance(e, NondeterminismError) for e in errors.values()), errors


async def test_change_guarded_by_patched_replays_recorded_histories() -> None:
    outcomes = await replay_files(CHECKOUTS, workflows=[PatchedFraudCheck])

    assert len(outcomes) == len(CHECKOUTS) > 0
    assert {o.source: o.error for o in outcomes if not o.ok} == {}


async def test_replay_files_reports_each_recorded_history() -> None:
    outcomes = await replay_files(RECORDED, HISTORY_WORKFLOWS)

    assert [o.source for o in outcomes] == [str(p) for p in RECORDED]
    assert all(o.ok for o in outcomes), [(o.source, o.error) for o in outcomes]
    assert {o.workflow_type for o in outcomes} >= {"Checkout", "SendReceipt", "CustomerLoyalty"}
    assert len({o.run_id for o in outcomes}) == len(outcomes)


def _seed_stock(services: dict[str, str], available: int) -> str:
    return new_stocked_sku(services, "RPL", available, unit_price_cents=500)


async def _wait_visible(env: WorkflowEnvironment, query: str, count: int) -> None:
    async def listed() -> bool:
        return (await env.client.count_workflows(query)).count >= count

    await eventually(listed, f"{query} lists {count} workflows", seconds=10)


@pytest.mark.usefixtures("checkout_worker")
async def test_replay_query_command_against_live_server(
    dev_env: WorkflowEnvironment, checkout_settings: Settings, services: dict[str, str]
) -> None:
    sku = _seed_stock(services, 10)
    batch = uuid.uuid4().hex[:8]
    requests = [
        CheckoutRequest(
            order_id=f"replay-{batch}-{n}",
            customer_id="customer-replay",
            email="replay@example.com",
            payment_token=card_token(services["payments"], card),
            items=[CartItem(sku=sku, quantity=1)],
        )
        for n, card in enumerate([CARD_OK, CARD_DECLINED])
    ]
    results = [
        await place_checkout(dev_env.client, r, checkout_settings.task_queue) for r in requests
    ]
    assert [r.status for r in results] == [Outcome.CONFIRMED, Outcome.REJECTED]
    ids = [checkout_workflow_id(r.order_id) for r in requests]
    query = "WorkflowType = 'Checkout' AND WorkflowId IN ({})".format(
        ", ".join(f"'{i}'" for i in ids)
    )
    await _wait_visible(dev_env, query, len(ids))

    done = await asyncio.to_thread(run_cli, dev_env, checkout_settings, "replay", "--query", query)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "replayed 2 workflow(s): 2 ok, 0 failed" in done.stdout
    assert all(i in done.stdout for i in ids), done.stdout

    one = await asyncio.to_thread(
        run_cli, dev_env, checkout_settings, "replay", "--query", query, "--limit", "1"
    )
    assert one.returncode == 0, one.stdout + one.stderr
    assert "replayed 1 workflow(s): 1 ok, 0 failed" in one.stdout


async def test_replay_query_command_fails_when_nothing_matches(
    dev_env: WorkflowEnvironment, checkout_settings: Settings
) -> None:
    query = f"WorkflowId = 'checkout-no-such-order-{uuid.uuid4().hex[:8]}'"

    done = await asyncio.to_thread(run_cli, dev_env, checkout_settings, "replay", "--query", query)

    assert done.returncode == 2, done.stdout + done.stderr
    assert "No workflow matches" in done.stdout


@pytest.mark.slow  # a Python process of its own, replaying every history
async def test_histories_replay_command_replays_recorded_files(tmp_path: Path) -> None:
    done = await asyncio.to_thread(
        run_harness, "harness.histories", "replay", str(HISTORIES), timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    n = len(RECORDED)
    assert f"replayed {n} workflow(s): {n} ok, 0 failed" in done.stdout

    empty = await asyncio.to_thread(
        run_harness, "harness.histories", "replay", str(tmp_path), timeout=120
    )
    assert empty.returncode == 2, empty.stdout + empty.stderr
    assert "No history files" in empty.stdout
