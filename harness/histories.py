"""Record workflow histories of each saga's paths, and replay histories against this code.

    python -m harness.histories capture [--out tests/histories] [--path NAME ...]
    python -m harness.histories replay [DIR]

(and, for live workflows, the operator's `checkout-saga replay --query ...`).

`capture` starts its own stack (Temporal, the services, a checkout worker, the examples'
workers: the trip's and the shipping's), drives one workflow per entry of PATHS and writes
each one's history to DIR/<name>.json. A new path (a cancellation,
a deadline, a fan-out) is one more entry in PATHS: a name and a coroutine that drives it and
returns the id of the workflow whose history to keep.
"""

import asyncio
import contextlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import (
    ApplicationError,
    ApplicationErrorCategory,
    WorkflowAlreadyStartedError,
)

from examples.shipping.models import (
    OrderRequest,
    OrderResult,
    ShippingResult,
    order_workflow_id,
)
from examples.shipping.models import Simulation as ShippingSimulation
from examples.shipping.worker import task_queue as shipping_task_queue
from examples.shipping.workflow import OrderWorkflow, ShippingWorkflow
from examples.trip.activities import TripActivities
from examples.trip.models import Booking, Simulation, TripRequest, trip_workflow_id
from examples.trip.worker import task_queue as trip_task_queue
from examples.trip.workflow import TripBookingWorkflow
from harness.cli import run
from models.checkout import (
    CheckoutRequest,
    CheckoutResult,
    CheckoutStep,
    checkout_workflow_id,
)
from models.events import ORDER_CONFIRMED, event_id
from models.fanout import (
    RECEIPT_CONSUMER,
    SHIPPING_CONSUMER,
    analytics_workflow_id,
    loyalty_workflow_id,
)
from services.auth import PUBLISHABLE_KEY_ENV, SERVICE_TOKEN_ENV, bearer_headers
from stack.launcher import LaunchError, running_stack
from starter.checkouts import demo_scenarios, outcome_label, place_checkout
from starter.payment_methods import CardTokens, tokenize_test_cards
from starter.replay import (
    EXIT_FAILED,
    EXIT_NOTHING,
    HistoryFileError,
    ReplayOutcome,
    describe_error,
    history_files,
    replay_files,
    report_replay,
)
from temporal_saga.client import sweep_now
from temporal_saga.models import (
    CancelSaga,
    SagaProgress,
    SagaResult,
    SkipCompensation,
    SweepAction,
)
from temporal_saga.reconcile import repair_workflow_id
from temporal_saga.worker import saga_worker
from worker.clients import connect_temporal
from worker.runner import WORKFLOWS
from worker.settings import Settings
from workflows.checkout import CheckoutWorkflow
from workflows.checkout_sweep import checkout_sweep
from workflows.fanout import job_id

DEFAULT_DIR = Path("tests/histories")
# Fixed order ids (checkout-history-1, ...): the recorded workflow ids stay the same from one
# capture to the next, so re-recording shows only what the code changed.
RUN_ID = "history"
PATH_TIMEOUT_SECONDS = 90.0
# What the recorded histories replay against: the checkout worker's workflows, and the
# examples', each on a worker of its own (examples/trip/worker.py, examples/shipping/worker.py).
HISTORY_WORKFLOWS: list[type] = [*WORKFLOWS, TripBookingWorkflow, OrderWorkflow, ShippingWorkflow]

console = Console(width=None if sys.stdout.isatty() else 160)
app = typer.Typer(
    help="Record workflow histories of each checkout path; replay recorded histories.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


class CaptureError(RuntimeError):
    pass


@dataclass(frozen=True)
class Recorded:
    workflow_id: str
    outcome: str


@dataclass(frozen=True)
class CaptureStack:
    """What a path drives: the client, the workers' task queues, the services' addresses."""

    client: Client
    task_queue: str
    service_urls: dict[str, str]
    service_headers: dict[str, str]  # the services' bearer token (services.auth)
    cards: CardTokens  # the test cards' tokens from this stack's payments service
    trip_task_queue: str  # the example trip's worker's
    shipping_task_queue: str  # the shipping example's worker's


# Drives one path against a running stack -> the workflow whose history to record.
PathRun = Callable[[CaptureStack], Awaitable[Recorded]]


@dataclass(frozen=True)
class HistoryPath:
    name: str  # the file: <out>/<name>.json
    description: str
    run: PathRun


def demo_request(label: str, cards: CardTokens, nth: int = 0) -> CheckoutRequest:
    """The nth request of the demo mix with this label (order ids history-1, history-2...)."""
    requests = [s.request for s in demo_scenarios(RUN_ID, cards) if s.label == label and s.request]
    if len(requests) <= nth:
        raise CaptureError(f"no demo scenario #{nth} labelled {label!r}")
    return requests[nth]


def _expect(outcome: str, expected: str) -> None:
    if outcome != expected:
        raise CaptureError(f"expected {expected}, got {outcome}")


def checkout_once(label: str, expected: str, nth: int = 0) -> PathRun:
    """Place the demo request with this label once; its outcome must be `expected`."""

    async def run(stack: CaptureStack) -> Recorded:
        request = demo_request(label, stack.cards, nth)
        outcome = outcome_label(await place_checkout(stack.client, request, stack.task_queue))
        _expect(outcome, expected)
        return Recorded(checkout_workflow_id(request.order_id), outcome)

    return run


def checkout_twice(label: str, expected: str, nth: int = 0) -> PathRun:
    """The same order placed twice at once, then again after it finished: one workflow."""

    async def run(stack: CaptureStack) -> Recorded:
        request = demo_request(label, stack.cards, nth)
        client, queue = stack.client, stack.task_queue
        first, second = await asyncio.gather(
            place_checkout(client, request, queue), place_checkout(client, request, queue)
        )
        again = await place_checkout(client, request, queue)
        if not first == second == again:
            raise CaptureError("the same order got different answers")
        outcome = outcome_label(first)
        _expect(outcome, expected)
        return Recorded(checkout_workflow_id(request.order_id), f"{outcome} (3 starts, 1 run)")

    return run


def _variant(request: CheckoutRequest, suffix: str, **changes: Any) -> CheckoutRequest:
    """The request under its own order id (history-3-cancel), with `changes` applied."""
    update = {"order_id": f"{request.order_id}-{suffix}", **changes}
    return CheckoutRequest.model_validate(request.model_dump() | update)


async def _start(
    stack: CaptureStack, request: CheckoutRequest
) -> WorkflowHandle[CheckoutWorkflow, CheckoutResult]:
    """Start the checkout without waiting for its decision."""
    return await stack.client.start_workflow(
        CheckoutWorkflow.run,
        request,
        id=checkout_workflow_id(request.order_id),
        task_queue=stack.task_queue,
    )


async def _wait_for(
    handle: WorkflowHandle[CheckoutWorkflow, CheckoutResult],
    reached: Callable[[SagaProgress[CheckoutResult]], bool],
) -> None:
    for _ in range(120):  # bounded: about 30 s
        if reached(await handle.query(CheckoutWorkflow.status)):
            return
        await asyncio.sleep(0.25)
    raise CaptureError(f"{handle.id} never reached the state this path needs")


@contextlib.asynccontextmanager
async def payments_down(
    stack: CaptureStack, paths: list[str] | None = None
) -> AsyncIterator[Callable[[], Awaitable[None]]]:
    """Every call to payments (under `paths`, if given) answers 503 until the yielded
    `recover()`, or the end."""
    payments = stack.service_urls["payments"]
    async with httpx.AsyncClient(timeout=10.0, headers=stack.service_headers) as http:

        async def fault(body: dict[str, Any]) -> None:
            (await http.put(f"{payments}/admin/fault", json=body)).raise_for_status()

        await fault({"fail": True, "paths": paths or []})
        try:
            yield lambda: fault({})
        finally:
            await fault({})


def cancelled_while_charging() -> PathRun:
    """Payments is down: the charge fails its local tries and retries as an activity; the
    customer cancels meanwhile."""

    async def run(stack: CaptureStack) -> Recorded:
        request = _variant(demo_request("payments 503 twice, retried", stack.cards), "cancel")
        async with payments_down(stack) as recover:
            handle = await _start(stack, request)
            await _wait_for(handle, lambda p: p.current_step == CheckoutStep.CHARGE_PAYMENT)
            await handle.execute_update(
                CheckoutWorkflow.cancel, CancelSaga(reason="changed my mind")
            )
            await recover()  # the refund (of nothing charged) goes through
        outcome = outcome_label(await handle.result())
        _expect(outcome, "REJECTED:cancelled")
        return Recorded(handle.id, outcome)

    return run


def deadline_while_charging() -> PathRun:
    """Not confirmed within a 1 s deadline: payments is down, the charge is in its retries."""

    async def run(stack: CaptureStack) -> Recorded:
        base = demo_request("payments 503 twice, retried", stack.cards)
        options = base.options.model_copy(update={"decision_deadline_seconds": 1})
        request = _variant(base, "deadline", options=options.model_dump())
        async with payments_down(stack) as recover:
            handle = await _start(stack, request)
            await _wait_for(handle, lambda p: p.status != "RUNNING")
            await recover()
        outcome = outcome_label(await handle.result())
        _expect(outcome, "REJECTED:deadline_exceeded")
        return Recorded(handle.id, outcome)

    return run


def refund_stuck_then_skipped() -> PathRun:
    """Card declined while refunds fail: the refund needs attention; an operator skips it."""

    async def run(stack: CaptureStack) -> Recorded:
        base = demo_request("card declined", stack.cards)
        options = base.options.model_copy(update={"compensation_attempts_before_attention": 1})
        request = _variant(base, "attention", options=options.model_dump())
        async with payments_down(stack, paths=["/charges/"]):  # refunds, not charges
            handle = await _start(stack, request)
            await _wait_for(handle, lambda p: bool(p.stuck))
            await handle.execute_update(
                CheckoutWorkflow.skip_compensation, SkipCompensation(reason="refunded by hand")
            )
        outcome = outcome_label(await handle.result())
        _expect(outcome, "REJECTED:card_declined")
        return Recorded(handle.id, f"{outcome} (refund skipped)")

    return run


def trip(name: str, **simulate: Any) -> TripRequest:
    """The example saga's trip `history-<name>`, its providers simulated as asked."""
    return TripRequest(
        trip_id=f"{RUN_ID}-{name}",
        traveller="Ada",
        flight="LH 1234",
        hotel="Hotel Adlon, 2 nights",
        car="compact",
        amount_cents=129_900,
        deadline_seconds=simulate.pop("deadline_seconds", 120),
        attempts_before_attention=1,
        simulate=Simulation.model_validate(simulate),
    )


def _saga_outcome(result: SagaResult) -> str:
    return result.status if result.reason_code is None else f"{result.status}:{result.reason_code}"


def trip_path(request: TripRequest, expected: str, operator: str | None = None) -> PathRun:
    """Book the trip; with `operator`, retry its stuck compensation, or cancel it while
    its car is being booked."""

    async def run(stack: CaptureStack) -> Recorded:
        handle = await stack.client.start_workflow(
            TripBookingWorkflow.run,
            request,
            id=trip_workflow_id(request.trip_id),
            task_queue=stack.trip_task_queue,
        )
        if operator == "retry":
            for _ in range(120):  # bounded: about 30 s
                if (await handle.query(TripBookingWorkflow.status)).stuck:
                    break
                await asyncio.sleep(0.25)
            await handle.execute_update(TripBookingWorkflow.retry_compensation, None)
        if operator == "cancel":
            for _ in range(120):  # bounded: about 30 s
                if (await handle.query(TripBookingWorkflow.status)).current_step == "book_car":
                    break
                await asyncio.sleep(0.25)
            await handle.execute_update(TripBookingWorkflow.cancel, CancelSaga(reason="not now"))
        outcome = _saga_outcome(await handle.result())
        _expect(outcome, expected)
        return Recorded(handle.id, outcome + (f" ({operator})" if operator else ""))

    return run


# The trip's own simulation has no refusal: the refused car comes from these providers, on a
# worker of this process (the recorded history is the trip's workflow all the same).
REFUSED_CAR_TASK_QUEUE = "histories-trip-refused-car"


class RefusedCarProviders(TripActivities):
    """The trip's providers, but the car rental refuses once the flight and the hotel are
    being booked; those two take long, and stop when the saga cancels them."""

    @activity.defn(name="book_flight")
    async def book_flight(self, trip: TripRequest) -> Booking:
        await _until_cancelled()
        return await super().book_flight(trip)

    @activity.defn(name="book_hotel")
    async def book_hotel(self, trip: TripRequest) -> Booking:
        await _until_cancelled()
        return await super().book_hotel(trip)

    @activity.defn(name="book_car")
    async def book_car(self, trip: TripRequest) -> Booking:
        await asyncio.sleep(1)  # the others are under way
        # Benign: an answer, not a fault (the worker logs it at debug, not with a traceback).
        raise ApplicationError(
            "no car left",
            type="car_refused",
            non_retryable=True,
            category=ApplicationErrorCategory.BENIGN,
        )


async def _until_cancelled() -> None:
    """Heartbeat for up to 30 s: a cancel reaches an activity through its heartbeats."""
    for _ in range(300):
        activity.heartbeat()
        await asyncio.sleep(0.1)


def _events(history: Any, event_type: int) -> list[Any]:
    return [e for e in history.events if e.event_type == event_type]


def trip_group_refused() -> PathRun:
    """The car refused while the flight and the hotel are being booked: the group cancels
    those two (and waits until they stopped), then all three are undone, newest first."""

    async def run(stack: CaptureStack) -> Recorded:
        request = trip("car-refused")
        worker = saga_worker(
            stack.client,
            task_queue=REFUSED_CAR_TASK_QUEUE,
            sagas=[TripBookingWorkflow],
            activities=RefusedCarProviders().all(),
            reconciler=False,
            # Heartbeats sent at once, so the group's cancel reaches the two in flight.
            max_heartbeat_throttle_interval=timedelta(milliseconds=100),
            default_heartbeat_throttle_interval=timedelta(milliseconds=100),
        )
        async with worker:
            handle = await stack.client.start_workflow(
                TripBookingWorkflow.run,
                request,
                id=trip_workflow_id(request.trip_id),
                task_queue=REFUSED_CAR_TASK_QUEUE,
            )
            result = await handle.result()
        outcome = _saga_outcome(result)
        _expect(outcome, "REJECTED:car_refused")
        if result.compensations_done != ["cancel_car", "cancel_hotel", "cancel_flight"]:
            raise CaptureError(f"not all three undone, newest first: {result}")
        history = await handle.fetch_history()
        cancelled = _events(history, EventType.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED)
        if len(cancelled) != 2:
            raise CaptureError(f"expected the flight and the hotel cancelled: {cancelled}")
        return Recorded(handle.id, f"{outcome} (flight, hotel cancelled; 3 undone)")

    return run


def shipped_order(name: str, **simulate: Any) -> OrderRequest:
    """The shipping example's order `history-<name>`, its desks simulated as asked."""
    return OrderRequest(
        order_id=f"{RUN_ID}-{name}",
        sku="teapot",
        address="1 Main Street, Springfield",
        amount_cents=4_900,
        attempts_before_attention=1,
        simulate=ShippingSimulation.model_validate(simulate),
    )


async def _place_once(stack: CaptureStack, request: OrderRequest) -> OrderResult:
    """The order's result; started unless an earlier path did (the child's path follows its
    parent's, and runs alone too)."""
    workflow_id = order_workflow_id(request.order_id)
    with contextlib.suppress(WorkflowAlreadyStartedError):
        await stack.client.start_workflow(
            OrderWorkflow.run,
            request,
            id=workflow_id,
            task_queue=stack.shipping_task_queue,
            # A finished order is not run again: its history is the one to keep.
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
    handle = stack.client.get_workflow_handle(workflow_id, result_type=OrderResult)
    result: OrderResult = await handle.result()
    return result


def shipped_order_path(request: OrderRequest, expected: str, child: str | None = None) -> PathRun:
    """Place the order; record it, or with `child` its nested saga (which must have ended
    `child`)."""

    async def run(stack: CaptureStack) -> Recorded:
        outcome = _saga_outcome(await _place_once(stack, request))
        _expect(outcome, expected)
        workflow_id = order_workflow_id(request.order_id)
        if child is None:
            return Recorded(workflow_id, outcome)
        handle = stack.client.get_workflow_handle(
            f"{workflow_id}/shipping", result_type=ShippingResult
        )
        child_outcome = _saga_outcome(await handle.result())
        _expect(child_outcome, child)
        return Recorded(handle.id, f"{child_outcome} (nested in {workflow_id})")

    return run


def terminated_then_reconciled(record: str) -> PathRun:
    """Payments is down: the checkout waits on its charge, and an operator terminates it; a
    sweep (records of any age) then has it repaired: cancelled, refunded, released. Records
    the sweep (`record="sweep"`) or the repair it started (`record="repair"`), each once."""

    async def run(stack: CaptureStack) -> Recorded:
        request = _variant(demo_request("confirmed", stack.cards), "terminated")
        workflow_id = checkout_workflow_id(request.order_id)
        repair_id = repair_workflow_id(workflow_id)
        if record == "repair":
            outcome = (await stack.client.get_workflow_handle(repair_id).result())["outcome"]
            return Recorded(repair_id, str(outcome))
        async with payments_down(stack):
            handle = await _start(stack, request)
            await _wait_for(handle, lambda p: p.current_step == CheckoutStep.CHARGE_PAYMENT)
            await handle.terminate(reason="an operator, mid-charge")
        sweep = checkout_sweep(Settings(task_queue=stack.task_queue), older_than_seconds=0)
        sweep_id = f"sweep-{RUN_ID}"
        report = await sweep_now(stack.client, sweep, stack.task_queue, workflow_id=sweep_id)
        repaired = [e for e in report.entries if e.workflow_id == workflow_id]
        if not repaired or repaired[0].action is not SweepAction.REPAIRED:
            raise CaptureError(f"the sweep did not repair {workflow_id}: {report}")
        return Recorded(sweep_id, f"{len(report.entries)} saga(s), 1 repaired")

    return run


def fanout_job(consumer: str) -> PathRun:
    """The job of the confirmed order (record after "confirmed"): its child workflow."""

    async def run(stack: CaptureStack) -> Recorded:
        request = demo_request("confirmed", stack.cards)
        event = event_id(checkout_workflow_id(request.order_id), ORDER_CONFIRMED)
        handle = stack.client.get_workflow_handle(job_id(event, consumer))
        result = await handle.result()
        status = result.get("status") if isinstance(result, dict) else None
        return Recorded(handle.id, str(status))

    return run


def long_lived(workflow_id: str | Callable[[CaptureStack], str]) -> PathRun:
    """A long-lived consumer as it stands (running): it got the confirmed orders' events.
    `workflow_id`: its id, or how to find it on the stack."""

    async def run(stack: CaptureStack) -> Recorded:
        workflow_id_on_stack = workflow_id(stack) if callable(workflow_id) else workflow_id
        handle = stack.client.get_workflow_handle(workflow_id_on_stack)
        for _ in range(80):  # bounded: about 20 s for the signals of the paths before
            state = await handle.query("state")
            if state.get("applied", 0) >= 1:
                return Recorded(workflow_id_on_stack, f"running, {state['applied']} applied")
            await asyncio.sleep(0.25)
        raise CaptureError(f"{workflow_id_on_stack} applied nothing")

    return run


PATHS: list[HistoryPath] = [
    HistoryPath(
        "confirmed", "confirmed, then the fan-out", checkout_once("confirmed", "CONFIRMED")
    ),
    HistoryPath(
        "out-of-stock",
        "out of stock: release, cancel",
        checkout_once("out of stock", "REJECTED:out_of_stock"),
    ),
    HistoryPath(
        "card-declined",
        "card declined: refund, release, cancel",
        checkout_once("card declined", "REJECTED:card_declined"),
    ),
    HistoryPath(
        "price-changed",
        "the shop's total differs from the customer's: refused at create_order",
        checkout_once("price changed", "REJECTED:price_changed"),
    ),
    HistoryPath(
        "transient-retries",
        "payments 503 twice, retried, confirmed",
        checkout_once("payments 503 twice, retried", "CONFIRMED"),
    ),
    HistoryPath(
        "same-order-twice",
        "same order started twice at once, then again",
        checkout_twice("confirmed", "CONFIRMED", nth=1),
    ),
    HistoryPath("cancelled", "cancel update during the charge", cancelled_while_charging()),
    HistoryPath("deadline", "deadline passed during the charge", deadline_while_charging()),
    HistoryPath(
        "needs-attention", "refund stuck, skipped by an operator", refund_stuck_then_skipped()
    ),
    HistoryPath("receipt-job", "SendReceipt of the confirmed order", fanout_job(RECEIPT_CONSUMER)),
    HistoryPath("shipping-job", "ShipOrder of the confirmed order", fanout_job(SHIPPING_CONSUMER)),
    HistoryPath(
        "loyalty",
        "CustomerLoyalty of the confirmed order's customer",
        long_lived(
            lambda stack: loyalty_workflow_id(demo_request("confirmed", stack.cards).customer_id)
        ),
    ),
    HistoryPath(
        "analytics",
        "Analytics shard of the confirmed order",
        long_lived(
            lambda stack: analytics_workflow_id(demo_request("confirmed", stack.cards).order_id)
        ),
    ),
    HistoryPath(
        "sweep",
        "a sweep after a checkout was terminated mid-charge",
        terminated_then_reconciled("sweep"),
    ),
    HistoryPath(
        "repair",
        "the repair of that checkout: cancelled, refunded, released",
        terminated_then_reconciled("repair"),
    ),
    HistoryPath(
        "trip-confirmed", "the example trip, paid", trip_path(trip("confirmed"), "CONFIRMED")
    ),
    HistoryPath(
        "trip-declined",
        "the trip's payment declined: car, hotel, flight cancelled",
        trip_path(trip("declined", payment_declined=True), "REJECTED:payment_declined"),
    ),
    HistoryPath(
        "trip-retried",
        "the car's cancellation stuck, retried by an operator",
        trip_path(
            trip("retried", payment_declined=True, cancel_failures={"cancel_car": 1}),
            "REJECTED:payment_declined",
            operator="retry",
        ),
    ),
    HistoryPath(
        "trip-cancelled",
        "the trip cancelled while its car was booked",
        trip_path(
            trip("cancelled", slow_step="book_car", slow_seconds=5),
            "REJECTED:cancelled",
            operator="cancel",
        ),
    ),
    HistoryPath(
        "trip-deadline",
        "the trip's deadline passed while its car was booked",
        trip_path(
            trip("deadline", slow_step="book_car", slow_seconds=5, deadline_seconds=1),
            "REJECTED:deadline_exceeded",
        ),
    ),
    HistoryPath(
        "trip-car-refused",
        "the group: the car refused, the flight and hotel in flight cancelled, all 3 undone",
        trip_group_refused(),
    ),
    HistoryPath(
        "shipped-order-confirmed",
        "the order charged: its nested shipping saga committed",
        shipped_order_path(shipped_order("confirmed"), "CONFIRMED"),
    ),
    HistoryPath(
        "shipped-order-declined",
        "the charge declined after the shipping was booked: the child undone, then the stock",
        shipped_order_path(
            shipped_order("declined", charge_declined=True), "REJECTED:charge_declined"
        ),
    ),
    HistoryPath(
        "shipping-declined",
        "that order's nested saga: booked, waited, compensated on its parent's word",
        shipped_order_path(
            shipped_order("declined", charge_declined=True),
            "REJECTED:charge_declined",
            child="REJECTED:parent_compensated",
        ),
    ),
    HistoryPath(
        "shipped-order-refused",
        "carrier B refused: the nested saga rejects itself, the order releases its stock",
        shipped_order_path(
            shipped_order("refused", refusing_carrier="b"), "REJECTED:carrier_refused"
        ),
    ),
]


@dataclass(frozen=True)
class Written:
    path: HistoryPath
    recorded: Recorded
    file: Path
    events: int


async def _capture(stack: CaptureStack, paths: list[HistoryPath], out: Path) -> list[Written]:
    client = stack.client
    written = []
    for path in paths:  # one at a time: each history is the path alone
        try:
            recorded = await asyncio.wait_for(path.run(stack), timeout=PATH_TIMEOUT_SECONDS)
        except TimeoutError as err:
            raise CaptureError(f"{path.name}: not done in {PATH_TIMEOUT_SECONDS:.0f} s") from err
        except CaptureError as err:
            raise CaptureError(f"{path.name}: {err}") from err
        history = await client.get_workflow_handle(recorded.workflow_id).fetch_history()
        file = out / f"{path.name}.json"
        file.write_text(json.dumps(_scrubbed(history.to_json_dict()), indent=2) + "\n")
        written.append(Written(path, recorded, file, len(history.events)))
    return written


def _scrubbed(node: Any) -> Any:
    """The history without stack traces: they hold this machine's paths, and replay
    never reads them."""
    if isinstance(node, dict):
        return {k: "" if k == "stackTrace" else _scrubbed(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_scrubbed(item) for item in node]
    return node


def _select(names: list[str] | None) -> list[HistoryPath]:
    if not names:
        return list(PATHS)
    known = {p.name: p for p in PATHS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise typer.BadParameter(
            f"unknown path(s) {', '.join(unknown)}; known: {', '.join(known)}",
            param_hint="--path",
        )
    return [known[n] for n in dict.fromkeys(names)]


@app.command()
def capture(
    out: Annotated[Path, typer.Option(help="Where the <path>.json files go.")] = DEFAULT_DIR,
    path: Annotated[
        list[str] | None,
        typer.Option("--path", help="Only this path (repeatable); default: every path."),
    ] = None,
) -> None:
    """Start a private stack, run one workflow per path, write each one's history as JSON."""
    paths = _select(path)
    out.mkdir(parents=True, exist_ok=True)
    data_dir = Path(tempfile.mkdtemp(prefix="checkout-saga-histories-"))

    async def run_all(
        env: dict[str, str], service_urls: dict[str, str]
    ) -> tuple[list[Written], list[ReplayOutcome]]:
        client = await connect_temporal({**os.environ, **env})
        headers = bearer_headers(env[SERVICE_TOKEN_ENV])
        cards = await tokenize_test_cards(service_urls["payments"], env[PUBLISHABLE_KEY_ENV])
        stack = CaptureStack(
            client,
            Settings().task_queue,
            service_urls,
            headers,
            cards,
            trip_task_queue=trip_task_queue(env),
            shipping_task_queue=shipping_task_queue(env),
        )
        written = await _capture(stack, paths, out)
        # What was just written must replay against this code, or it is no use as a net.
        return written, await replay_files((w.file for w in written), HISTORY_WORKFLOWS)

    try:
        with running_stack(
            # In clear: the recorded histories are replayed in CI, where no key is kept.
            data_dir,
            ui=False,
            service_env={"PAYMENTS_FLAKY_FAILURES": "2"},
            encrypt=False,
        ) as stack:
            written, replayed = asyncio.run(run_all(stack.env, dict(stack.service_urls)))
    except (LaunchError, CaptureError) as err:
        console.print(f"[red]Capture failed: {err}[/red]\nLogs of the parts: {data_dir}")
        raise typer.Exit(1) from err
    shutil.rmtree(data_dir, ignore_errors=True)

    table = Table(title=f"Histories written to {out}")
    for column in ("path", "workflow id", "outcome", "events", "file", "replay"):
        table.add_column(column, justify="right" if column == "events" else "left")
    for item, outcome in zip(written, replayed, strict=True):
        table.add_row(
            item.path.name,
            item.recorded.workflow_id,
            item.recorded.outcome,
            str(item.events),
            str(item.file),
            "[green]ok[/green]" if outcome.ok else "[red]failed[/red]",
        )
    console.print(table)
    failed = [o for o in replayed if not o.ok]
    for outcome in failed:
        error = describe_error(outcome.error) if outcome.error else ""
        console.print(f"[red]{outcome.source} does not replay: {error}[/red]")
    if failed:
        raise typer.Exit(EXIT_FAILED)


@app.command("replay")
def replay_dir(
    directory: Annotated[
        Path, typer.Argument(help="A directory of history JSON files.")
    ] = DEFAULT_DIR,
) -> None:
    """Replay every DIR/*.json history against this code's workflows (exit 1 if any fails)."""
    files = history_files(directory) if directory.is_dir() else []
    try:
        outcomes = asyncio.run(replay_files(files, HISTORY_WORKFLOWS))
    except HistoryFileError as err:
        console.print(f"[red]Not a workflow history: {err}[/red]")
        raise typer.Exit(EXIT_NOTHING) from err
    report_replay(outcomes, f"Replay of {directory}", f"No history files (*.json) in {directory}")


if __name__ == "__main__":
    run(app)
