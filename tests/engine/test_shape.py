"""A saga's shape from its class (temporal_saga.shape): the trip's group of providers and its
pivot, and a saga that runs another as a nested saga, as text and as a Mermaid flowchart;
and `python -m temporal_saga.shape`."""

import re

import pytest
from pydantic import BaseModel
from temporalio import activity, workflow

from examples.trip.workflow import TripBookingWorkflow
from temporal_saga import ChildSaga, SagaResult, SagaWorkflow, Step
from temporal_saga.shape import describe, main, mermaid, saga_types, shape


class Parcel(BaseModel):
    parcel_id: str


@activity.defn
async def hold_stock(parcel: Parcel) -> None: ...


@activity.defn
async def release_stock(parcel: Parcel) -> None: ...


@activity.defn
async def audit_order(parcel: Parcel) -> None: ...


@activity.defn(name="charge_card")
async def take_money(parcel: Parcel) -> None: ...


@activity.defn
async def notify_customer(parcel: Parcel) -> None: ...


@activity.defn
async def book_dhl(parcel: Parcel) -> None: ...


@activity.defn
async def cancel_dhl(parcel: Parcel) -> None: ...


@activity.defn
async def book_ups(parcel: Parcel) -> None: ...


@activity.defn
async def cancel_ups(parcel: Parcel) -> None: ...


@workflow.defn(name="Shipping")
class ShippingSaga(SagaWorkflow[Parcel, SagaResult]):
    dhl = Step(book_dhl, undo=cancel_dhl)
    ups = Step(book_ups, undo=cancel_ups, task_queue="carriers")

    @workflow.run
    async def run(self, parcel: Parcel) -> SagaResult:
        return await self.run_saga(self.ship(parcel))

    async def ship(self, parcel: Parcel) -> None:
        await self.dhl(parcel)
        await self.ups(parcel)


@workflow.defn(name="Order")
class OrderSaga(SagaWorkflow[Parcel, SagaResult]):
    hold = Step(hold_stock, undo=release_stock, local_first=True)
    shipping = ChildSaga(ShippingSaga)
    audit = Step(audit_order)  # before the pivot, with nothing to undo
    charge = Step(take_money, pivot=True)
    notify = Step(notify_customer)

    @workflow.run
    async def run(self, parcel: Parcel) -> SagaResult:
        return await self.run_saga(self.order(parcel))

    async def order(self, parcel: Parcel) -> None:
        await self.hold(parcel)
        await self.shipping(parcel)
        await self.audit(parcel)
        await self.charge(parcel)
        await self.notify(parcel)


# -- the shape --------------------------------------------------------------------------------


def test_the_trips_providers_are_one_stage_before_its_pivot() -> None:
    trip = shape(TripBookingWorkflow)
    assert trip.type_name == "TripBooking"
    assert [(s.group, [step.name for step in s.steps]) for s in trip.stages] == [
        ("providers", ["book_flight", "book_hotel", "book_car"]),
        (None, ["take_payment"]),
    ]
    assert trip.pivot is not None and trip.pivot.name == "take_payment"
    assert [step.undo for step in trip.compensations] == [
        "cancel_car",
        "cancel_hotel",
        "cancel_flight",
    ]


def test_a_nested_saga_is_its_own_shape_and_the_steps_after_the_pivot_go_forward() -> None:
    order = shape(OrderSaga)
    shipping = order.steps[1]
    assert shipping.child is not None and shipping.child.type_name == "Shipping"
    assert [step.name for step in shipping.child.steps] == ["dhl", "ups"]
    assert shipping.undo == "shipping"  # the nested saga undoes itself
    assert [step.name for step in order.steps if step.forward_only] == ["notify"]
    assert [step.undo for step in order.compensations] == ["shipping", "release_stock"]


# -- as text ----------------------------------------------------------------------------------


def test_the_trip_as_text() -> None:
    assert describe(TripBookingWorkflow) == (
        "TripBooking (examples.trip.workflow.TripBookingWorkflow)\n"
        "steps, in the order declared:\n"
        "  1. group providers, its members together:\n"
        "     - book_flight: activity book_flight, undo cancel_flight\n"
        "     - book_hotel: activity book_hotel, undo cancel_hotel\n"
        "     - book_car: activity book_car, undo cancel_car\n"
        "  2. take_payment: activity take_payment, PIVOT\n"
        "compensation, newest first: cancel_car, cancel_hotel, cancel_flight\n"
        "pivot: take_payment (CONFIRMED once it succeeds; nothing undone after it)\n"
        "after the pivot, forward only: no step declared\n"
    )


def test_a_nested_saga_as_text() -> None:
    assert describe(OrderSaga) == (
        f"Order ({__name__}.OrderSaga)\n"
        "steps, in the order declared:\n"
        "  1. hold: activity hold_stock, undo release_stock, local first\n"
        f"  2. shipping: nested saga Shipping ({__name__}.ShippingSaga)\n"
        "     1. dhl: activity book_dhl, undo cancel_dhl\n"
        "     2. ups: activity book_ups, undo cancel_ups, task queue carriers\n"
        "     its compensation, newest first: cancel_ups, cancel_dhl\n"
        "  3. audit: activity audit_order, no undo\n"
        "  4. charge: activity charge_card, PIVOT\n"
        "  5. notify: activity notify_customer, forward only\n"
        "compensation, newest first: shipping (its nested saga's: cancel_ups, cancel_dhl), "
        "release_stock\n"
        "pivot: charge (CONFIRMED once it succeeds; nothing undone after it)\n"
        "after the pivot, forward only: notify\n"
    )


# -- as a Mermaid flowchart -------------------------------------------------------------------

NODE = re.compile(r"^\s*(\w+)[\[({]")
BOX = re.compile(r"^\s*subgraph (\w+) \[")
EDGE = re.compile(r"^\s*(\w+) (-->|-\.->|-\. fails \.->) (\w+)$")


def boxes(chart: str) -> dict[str, list[str]]:
    """Each box (subgraph) of a chart and the ids drawn directly in it."""
    inside: dict[str, list[str]] = {}
    open_: list[str] = []
    for line in chart.splitlines()[1:]:
        if box := BOX.match(line):
            if open_:
                inside[open_[-1]].append(box[1])
            open_.append(box[1])
            inside[box[1]] = []
        elif line.strip() == "end":
            open_.pop()
        elif (node := NODE.match(line)) and open_:
            inside[open_[-1]].append(node[1])
    assert open_ == [], "a box is not closed"
    return inside


def edges(chart: str, arrow: str) -> list[tuple[str, str]]:
    return [
        (m[1], m[3]) for line in chart.splitlines() if (m := EDGE.match(line)) and m[2] == arrow
    ]


def chain(pairs: list[tuple[str, str]], first: str) -> list[str]:
    """Follow edges from `first` while each node has one way on."""
    after = dict(pairs)
    path = [first]
    while path[-1] in after:
        path.append(after[path[-1]])
    return path


@pytest.mark.parametrize("saga", [TripBookingWorkflow, OrderSaga], ids=lambda s: s.__name__)
def test_every_line_of_the_chart_is_a_node_a_box_or_an_edge_between_them(saga: type) -> None:
    chart = mermaid(saga)
    lines = chart.splitlines()
    assert lines[0] == "flowchart TD"
    drawn = {m[1] for line in lines if (m := NODE.match(line) or BOX.match(line))}
    for line in lines[1:]:
        edge = EDGE.match(line)
        assert edge or NODE.match(line) or BOX.match(line) or line.strip() == "end", line
        if edge:
            assert {edge[1], edge[3]} <= drawn, line
    boxes(chart)


def test_the_trips_chart_runs_the_providers_together_and_undoes_them_newest_first() -> None:
    chart = mermaid(TripBookingWorkflow)
    assert boxes(chart)["g_providers"] == ["s_book_flight", "s_book_hotel", "s_book_car"]
    assert 'subgraph g_providers ["group providers: together"]' in chart
    assert 's_take_payment{{"take_payment<br/>pivot"}}' in chart  # the pivot's own shape
    assert chain(edges(chart, "-->"), "start") == [
        "start",
        "g_providers",
        "s_take_payment",
        "confirmed",
    ]
    assert chain(edges(chart, "-.->"), "u_book_car") == [
        "u_book_car",
        "u_book_hotel",
        "u_book_flight",
        "rejected",
    ]
    assert 'u_book_car("cancel_car")' in chart
    # A failure of the group or of the pivot undoes from the newest registered undo.
    assert edges(chart, "-. fails .->") == [
        ("g_providers", "u_book_car"),
        ("s_take_payment", "u_book_car"),
    ]


def test_a_nested_sagas_chart_boxes_its_steps_and_its_compensations() -> None:
    chart = mermaid(OrderSaga)
    inside = boxes(chart)
    assert inside["c_shipping"] == ["s_shipping__dhl", "s_shipping__ups"]
    assert inside["k_shipping"] == ["u_shipping__ups", "u_shipping__dhl"]
    assert 'subgraph c_shipping ["shipping: nested saga Shipping"]' in chart
    assert 's_shipping__ups["ups<br/>activity book_ups<br/>task queue carriers"]' in chart
    assert 's_charge{{"charge<br/>activity charge_card<br/>pivot"}}' in chart
    assert 's_notify["notify<br/>activity notify_customer<br/>forward only"]' in chart
    forward = edges(chart, "-->")
    assert chain(forward, "start") == [
        "start",
        "s_hold",
        "c_shipping",
        "s_audit",
        "s_charge",
        "s_notify",
        "confirmed",
    ]
    assert ("s_shipping__dhl", "s_shipping__ups") in forward
    dashed = edges(chart, "-.->")
    assert chain(dashed, "k_shipping") == ["k_shipping", "u_hold", "rejected"]
    assert ("u_shipping__ups", "u_shipping__dhl") in dashed
    # Nothing after the pivot fails into the compensation; a step with no undo starts it at
    # the newest undo before it.
    assert edges(chart, "-. fails .->") == [
        ("s_hold", "u_hold"),
        ("c_shipping", "k_shipping"),
        ("s_audit", "k_shipping"),
        ("s_charge", "k_shipping"),
    ]


def test_a_label_keeps_its_quotes_out_of_the_syntax() -> None:
    @activity.defn(name='say "hi"')
    async def greet(parcel: Parcel) -> None: ...

    class Quoted(SagaWorkflow[Parcel, SagaResult]):
        greet_step = Step(greet)

    assert 's_greet_step["greet_step<br/>activity say #quot;hi#quot;"]' in mermaid(Quoted)
    assert describe(Quoted).startswith(f"Quoted ({__name__}.")  # no @workflow.defn: its class


# -- python -m temporal_saga.shape ------------------------------------------------------------


def test_a_modules_sagas_by_workflow_type() -> None:
    import examples.trip.workflow

    assert saga_types(examples.trip.workflow) == {"TripBooking": TripBookingWorkflow}


def test_the_module_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["examples.trip.workflow", "TripBooking", "--mermaid"]) == 0
    assert capsys.readouterr().out == mermaid(TripBookingWorkflow)
    with pytest.raises(SystemExit) as exit_:
        main(["examples.trip.workflow", "Trip"])
    assert exit_.value.code == 2
    assert "no saga type 'Trip' in examples.trip.workflow; its saga types: TripBooking" in (
        capsys.readouterr().err
    )
    with pytest.raises(SystemExit):
        main(["examples.no_such_module", "TripBooking"])
    assert "cannot import examples.no_such_module: ModuleNotFoundError" in capsys.readouterr().err
