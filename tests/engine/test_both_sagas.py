"""The same scenarios against both sagas on the engine, the checkout and the example trip,
on a real dev server: cancel before and after the pivot, Temporal cancellation twice during
compensation, the deadline, a stuck compensation resolved with `checkout-saga attention retry`
and `skip` (the real CLI, by --workflow-id), the status query, and the SagaStatus/SagaStep
search attributes as the history recorded them.

The checkout runs with scripted activities (tests/support/fake_shop.py) on the checkout
worker's workflows; the trip on a worker of its own (examples/trip/worker.py, made with the
engine's saga_worker) with its own activities, steered by its request's simulation. Each saga
names its third step (the one held, refused or undone) and its pivot; the rest is the same
for both.
"""

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from examples.trip.__main__ import main as trip_command
from examples.trip.models import Simulation, TripRequest, trip_workflow_id
from examples.trip.worker import TASK_QUEUE_ENV, trip_worker
from examples.trip.workflow import TripBookingWorkflow
from models.checkout import CUSTOMER_ID, CheckoutOptions, checkout_workflow_id
from temporal_saga import SAGA_STATUS, SAGA_STEP
from temporal_saga.client import skip_compensation, status
from temporal_saga.models import CancelSaga, CompensationState, Outcome, SagaProgress, SagaResult
from temporal_saga.reconcile import NEEDS_ATTENTION_QUERY
from tests.support.cli import run_cli
from tests.support.fake_shop import HEALED, scripted_checkout_workers, scripted_request
from worker.settings import Settings
from workflows.checkout import CheckoutWorkflow

TASK_QUEUE = "sagas-tests"
TRIP_TASK_QUEUE = "sagas-tests-trips"
SETTINGS = Settings(task_queue=TASK_QUEUE)
Handle = WorkflowHandle[Any, Any]


@dataclass(frozen=True)
class Plan:
    """What a scenario needs of a saga; each saga turns it into its own request."""

    # The third step (or the pivot) does not finish: it keeps failing, or is slow.
    hold: str | None = None  # "third" | "pivot"
    # The step before the pivot (checkout) or the pivot (trip) is refused.
    refuse: bool = False
    # The third step's undo fails this often before it works (-1: until healed).
    undo_failures: int = 0
    deadline_seconds: int = 120
    attempts_before_attention: int = 10


@dataclass(frozen=True)
class SagaCase:
    name: str
    steps: tuple[str, str, str, str]  # the last is the pivot
    # In the order they run: the third step's undo first.
    compensations: tuple[str, str, str]
    refused_step: str
    refused_code: str
    own_attribute: tuple[str, str] | None
    start: Callable[[Client, Plan], Awaitable[Handle]]
    # Makes what was told to keep failing work from now on.
    heal: Callable[[Handle], None]


async def start_checkout(client: Client, plan: Plan) -> Handle:
    script: dict[str, str] = {}
    if plan.hold == "third":
        script["charge_payment"] = "fail"
    if plan.hold == "pivot":
        script["confirm_order"] = "fail"
    if plan.refuse:
        script["charge_payment"] = "decline"
    if plan.undo_failures:
        script["refund_payment"] = "fail"
    request = scripted_request(
        "sagas",
        script,
        options=CheckoutOptions(
            decision_deadline_seconds=plan.deadline_seconds,
            compensation_attempts_before_attention=plan.attempts_before_attention,
        ),
    )
    return await client.start_workflow(
        CheckoutWorkflow.run,
        request,
        id=checkout_workflow_id(request.order_id),
        task_queue=TASK_QUEUE,
    )


def heal_checkout(handle: Handle) -> None:
    order_id = handle.id.removeprefix("checkout-")
    for name in ("charge_payment", "confirm_order", "refund_payment"):
        HEALED.add(f"{order_id}:{name}")


async def start_trip(client: Client, plan: Plan) -> Handle:
    slow = {"third": "book_car", "pivot": "take_payment"}.get(plan.hold or "")
    failures = 1_000_000 if plan.undo_failures < 0 else plan.undo_failures
    trip = TripRequest(
        trip_id=uuid.uuid4().hex[:12],
        traveller="Ada",
        flight="LH 1234",
        hotel="Adlon",
        car="compact",
        amount_cents=1000,
        deadline_seconds=plan.deadline_seconds,
        attempts_before_attention=plan.attempts_before_attention,
        simulate=Simulation(
            payment_declined=plan.refuse,
            slow_step=slow,
            slow_seconds=30 if slow == "book_car" else 3,
            cancel_failures={"cancel_car": failures} if failures else {},
        ),
    )
    return await client.start_workflow(
        TripBookingWorkflow.run,
        trip,
        id=trip_workflow_id(trip.trip_id),
        task_queue=TRIP_TASK_QUEUE,
    )


def heal_trip(handle: Handle) -> None:
    """The trip's providers heal by themselves (after their simulated failures)."""


CASES = [
    SagaCase(
        "checkout",
        ("create_order", "reserve_stock", "charge_payment", "confirm_order"),
        ("refund_payment", "release_stock", "cancel_order"),
        refused_step="charge_payment",
        refused_code="card_declined",
        own_attribute=(CUSTOMER_ID.name, "customer-7"),
        start=start_checkout,
        heal=heal_checkout,
    ),
    SagaCase(
        "trip",
        ("book_flight", "book_hotel", "book_car", "take_payment"),
        ("cancel_car", "cancel_hotel", "cancel_flight"),
        refused_step="take_payment",
        refused_code="payment_declined",
        own_attribute=None,
        start=start_trip,
        heal=heal_trip,
    ),
]


@pytest.fixture(scope="module")
async def client(dev_env: WorkflowEnvironment) -> AsyncIterator[Client]:
    async with (
        scripted_checkout_workers(dev_env.client, TASK_QUEUE),
        trip_worker(dev_env.client, TRIP_TASK_QUEUE),
    ):
        yield dev_env.client


@pytest.fixture(params=CASES, ids=[case.name for case in CASES])
def case(request: pytest.FixtureRequest) -> SagaCase:
    chosen: SagaCase = request.param
    return chosen


async def progress_of(client: Client, handle: Handle) -> SagaProgress[SagaResult]:
    return await status(client, handle.id, SagaProgress[SagaResult])


async def wait_for(client: Client, handle: Handle, **expect: object) -> SagaProgress[SagaResult]:
    """Poll the status query until every expected field matches (bounded)."""
    progress = await progress_of(client, handle)
    for _ in range(300):  # 30 s at most
        progress = await progress_of(client, handle)
        if all(getattr(progress, k) == v for k, v in expect.items()):
            return progress
        await asyncio.sleep(0.1)
    raise AssertionError(f"never reached {expect}; last status: {progress}")


async def published(handle: Handle) -> list[tuple[str, str]]:
    """The (SagaStatus, SagaStep) of each upsert in the history, in order."""
    history = await handle.fetch_history()
    seen = []
    for event in history.events:
        if event.event_type != EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            continue
        fields = event.upsert_workflow_search_attributes_event_attributes.search_attributes
        values = {k: json.loads(v.data) for k, v in fields.indexed_fields.items()}
        seen.append((values.get(SAGA_STATUS.name, ""), values.get(SAGA_STEP.name, "")))
    return seen


def statuses(upserts: list[tuple[str, str]]) -> list[str]:
    """The SagaStatus sequence, each change once."""
    sequence: list[str] = []
    for saga_status, _ in upserts:
        if not sequence or sequence[-1] != saga_status:
            sequence.append(saga_status)
    return sequence


async def result_of(handle: Handle) -> SagaResult:
    return SagaResult.model_validate(await handle.result())


async def test_cancel_before_the_pivot_compensates_in_reverse(
    client: Client, case: SagaCase
) -> None:
    handle = await case.start(client, Plan(hold="third"))
    # Only the held step still runs (the trip's group: flight and hotel are done).
    await wait_for(client, handle, running=[case.steps[2]])
    answer = await handle.execute_update("cancel", CancelSaga(reason="changed my mind"))
    assert answer["status"] == "REJECTED" and answer["reason_code"] == "cancelled"
    result = await result_of(handle)
    assert result.failed_step == case.steps[2]
    assert sorted(result.steps_done) == sorted(case.steps[:2])
    assert result.compensations_done == list(case.compensations)
    upserts = await published(handle)
    assert statuses(upserts) == ["RUNNING", "COMPENSATING", "REJECTED"]
    # The steps running, one upsert per change (a group's members together), then the
    # failed step stays.
    running = [step for saga_status, step in upserts if saga_status == "RUNNING"]
    assert running[0] == "" and running[-1] == case.steps[2]
    assert {name for label in running[1:] for name in label.split(", ")} == set(case.steps[:3])
    if case.name == "trip":
        assert running[1] == "book_flight, book_hotel, book_car"
    assert upserts[-1] == ("REJECTED", case.steps[2])
    described = (await handle.describe()).typed_search_attributes
    if case.own_attribute:
        name, value = case.own_attribute
        assert {p.key.name: p.value for p in described}[name] == value
    case.heal(handle)


async def test_cancel_from_the_pivot_on_is_refused_and_it_confirms(
    client: Client, case: SagaCase
) -> None:
    handle = await case.start(client, Plan(hold="pivot"))
    await wait_for(client, handle, current_step=case.steps[3])
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update("cancel", CancelSaga())
    assert "too late to cancel" in str(refused.value.cause)
    await handle.cancel()  # a Temporal cancellation is ignored from the pivot on too
    case.heal(handle)
    result = await result_of(handle)
    assert result.status is Outcome.CONFIRMED
    # In the order they ended (the trip's group members in any order), the pivot last.
    assert sorted(result.steps_done[:3]) == sorted(case.steps[:3])
    assert result.steps_done[3:] == [case.steps[3]]
    assert result.compensations == []
    assert statuses(await published(handle)) == ["RUNNING", "CONFIRMED"]


async def test_temporal_cancel_twice_during_compensation_runs_it_to_the_end(
    client: Client, case: SagaCase
) -> None:
    handle = await case.start(client, Plan(hold="third", undo_failures=3))
    await wait_for(client, handle, running=[case.steps[2]])
    await handle.cancel()
    progress = await wait_for(client, handle, status="COMPENSATING")
    assert progress.compensations[0].name == case.compensations[0]
    for _ in range(300):  # 30 s at most: until a call of the first compensation has failed
        if (await progress_of(client, handle)).compensations[0].last_error:
            break
        await asyncio.sleep(0.1)
    await handle.cancel()  # while it waits to retry
    case.heal(handle)
    result = await result_of(handle)
    assert (result.status, result.reason_code) == (Outcome.REJECTED, "cancelled")
    assert result.compensations_done == list(case.compensations)
    assert result.compensations[0].attempts >= 2
    assert statuses(await published(handle)) == ["RUNNING", "COMPENSATING", "REJECTED"]


async def test_the_deadline_compensates(client: Client, case: SagaCase) -> None:
    handle = await case.start(client, Plan(hold="third", deadline_seconds=2))
    result = await result_of(handle)
    assert (result.status, result.reason_code) == (Outcome.REJECTED, "deadline_exceeded")
    assert result.failed_step == case.steps[2]
    assert result.compensations_done == list(case.compensations)
    assert statuses(await published(handle)) == ["RUNNING", "COMPENSATING", "REJECTED"]
    case.heal(handle)


@pytest.mark.parametrize("resolution", ["retry", "skip"])
async def test_a_stuck_compensation_is_resolved_through_the_cli(
    dev_env: WorkflowEnvironment, client: Client, case: SagaCase, resolution: str
) -> None:
    failures = 1 if resolution == "retry" else -1
    plan = Plan(refuse=True, undo_failures=failures, attempts_before_attention=1)
    handle = await case.start(client, plan)
    stuck = case.compensations[0]
    progress = await wait_for(client, handle, status="NEEDS_ATTENTION")
    assert progress.stuck == [stuck]
    assert progress.decision is not None
    assert progress.decision.reason_code == case.refused_code
    report = progress.compensations[0]
    assert (report.name, report.state) == (stuck, CompensationState.STUCK)
    assert report.last_error

    def cli(*args: str) -> tuple[int, str]:
        done = run_cli(dev_env, SETTINGS, "attention", *args)
        return done.returncode, done.stdout + done.stderr

    query = f"{NEEDS_ATTENTION_QUERY} AND WorkflowId = '{handle.id}'"
    for _ in range(120):  # the visibility store catches up within a few seconds
        if (await client.count_workflows(query)).count == 1:
            break
        await asyncio.sleep(0.25)
    code, out = await asyncio.to_thread(cli, "list", "--json")
    assert code == 0, out
    listed = {row["workflow_id"]: row for row in map(json.loads, out.splitlines())}
    assert listed[handle.id]["stuck"] == [stuck]
    assert listed[handle.id]["workflow_type"] == ("Checkout", "TripBooking")[CASES.index(case)]

    # Naming a compensation that is not stuck is refused, with the stuck one's name.
    code, out = await asyncio.to_thread(
        cli, "retry", "--workflow-id", handle.id, "--compensation", case.compensations[1]
    )
    assert code == 1 and f"stuck: {stuck}" in out, out
    case.heal(handle)
    if resolution == "retry":
        code, out = await asyncio.to_thread(cli, "retry", "--workflow-id", handle.id)
        assert code == 0 and f"{handle.id}: retrying {stuck}" in out, out
    else:
        # A blank reason is refused by the update's validator (the CLI refuses it sooner).
        with pytest.raises(WorkflowUpdateFailedError) as blank:
            await skip_compensation(client, handle.id, "   ")
        assert "a reason is required" in str(blank.value.cause)
        code, out = await asyncio.to_thread(
            cli, "skip", "--workflow-id", handle.id, "--reason", "undone by hand"
        )
        assert code == 0 and f"{handle.id}: skipped {stuck}" in out, out
    result = await result_of(handle)
    assert (result.status, result.failed_step) == (Outcome.REJECTED, case.refused_step)
    first = result.compensations[0]
    if resolution == "retry":
        assert first.state is CompensationState.DONE and first.attempts == 2
        assert result.compensations_done == list(case.compensations)
    else:
        assert (first.state, first.skip_reason) == (CompensationState.SKIPPED, "undone by hand")
        assert result.compensations_done == list(case.compensations[1:])
    assert statuses(await published(handle)) == [
        "RUNNING",
        "COMPENSATING",
        "NEEDS_ATTENTION",
        "COMPENSATING",
        "REJECTED",
    ]
    final = await progress_of(client, handle)
    assert final.status == "REJECTED" and final.stuck == []


def book_trip(env: WorkflowEnvironment, *args: str) -> tuple[int, str, str]:
    """`python -m examples.trip book ...`, against the test's Temporal and trip worker."""
    book_env = {
        **os.environ,
        "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
        "TEMPORAL_NAMESPACE": "default",
        TASK_QUEUE_ENV: TRIP_TASK_QUEUE,
    }
    done = subprocess.run(
        [sys.executable, "-m", "examples.trip", "book", *args],
        env=book_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr


async def test_the_trip_runs_from_its_command_and_an_operator_retries_it(
    dev_env: WorkflowEnvironment, client: Client
) -> None:
    """What docs/saga.md shows: `python -m examples.trip book`, then `checkout-saga attention
    list`, `attention retry --workflow-id` and `status --workflow-id`, through the real
    commands."""
    trip_id = f"cli-{uuid.uuid4().hex[:8]}"
    workflow_id = trip_workflow_id(trip_id)

    def cli(*args: str) -> tuple[int, str, str]:
        done = run_cli(dev_env, SETTINGS, *args)
        return done.returncode, done.stdout, done.stderr

    code, out, err = await asyncio.to_thread(
        book_trip,
        dev_env,
        "--trip-id",
        trip_id,
        "--declined",
        "--cancel-failures",
        "cancel_car:1",
        "--attempts-before-attention",
        "1",
    )
    assert code == 0, out + err
    answer = SagaResult.model_validate_json(out)
    assert (answer.status, answer.reason_code) == (Outcome.REJECTED, "payment_declined")
    assert f"checkout-saga status --workflow-id {workflow_id}" in err
    handle = client.get_workflow_handle(workflow_id)
    await wait_for(client, handle, status="NEEDS_ATTENTION")
    query = f"{NEEDS_ATTENTION_QUERY} AND WorkflowId = '{workflow_id}'"
    for _ in range(120):  # the visibility store catches up within a few seconds
        if (await client.count_workflows(query)).count == 1:
            break
        await asyncio.sleep(0.25)
    code, out, err = await asyncio.to_thread(cli, "attention", "list")
    assert code == 0 and workflow_id in out and "cancel_car" in out, out + err
    code, out, err = await asyncio.to_thread(
        cli, "attention", "retry", "--workflow-id", workflow_id
    )
    assert code == 0 and f"{workflow_id}: retrying cancel_car" in out, out + err
    await handle.result()
    code, out, err = await asyncio.to_thread(cli, "status", "--workflow-id", workflow_id)
    assert code == 0, out + err
    final = SagaProgress[SagaResult].model_validate_json(out)
    assert final.status == "REJECTED" and final.model_extra == {"trip_id": trip_id}
    assert [(c.name, c.state) for c in final.compensations] == [
        ("cancel_car", CompensationState.DONE),
        ("cancel_hotel", CompensationState.DONE),
        ("cancel_flight", CompensationState.DONE),
    ]


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--trip-id", "no spaces"], "--trip-id"),
        (["--amount-cents", "0"], "--amount-cents"),
        (["--slow", "book_car:601"], "--slow"),
        (["--slow", "book_boat:1"], "--slow"),
        (["--cancel-failures", "cancel_car:x"], "--cancel-failures"),
        (["--deadline-seconds", "soon"], "--deadline-seconds"),
    ],
)
def test_bad_input_to_the_trip_command_names_the_option(
    args: list[str], option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Refused before anything starts: exit 2, the option named (no Temporal needed)."""
    code: int | str | None
    try:
        code = trip_command(["book", *args])
    except SystemExit as exit_:  # argparse's refusal
        code = exit_.code
    out, err = capsys.readouterr()
    assert code == 2 and option in err and out == "", out + err
