"""The reconciler for sagas with no finder and no repair of their own, end to end: a dev
server of this module's, the checkout's worker (where the sweep runs, as in production) and
a worker of the example trip and of a small saga of this module's with a step after its
pivot. Runs terminated, timed out or failed at different points are settled by ONE
`checkout-saga reconcile`: each is reset to its last completed workflow task and the new run
cancelled, so it compensates before the pivot and goes on after it; a second run touches
none of them again; a running saga is never touched. Also: with no worker to run the sweep
the command fails within seconds and leaves no sweep running, nor does it when stopped.
"""

import asyncio
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from examples.trip.activities import CANCELLED, TripActivities
from examples.trip.models import Simulation, TripRequest, trip_workflow_id
from examples.trip.workflow import TripBookingWorkflow
from models.checkout import SEARCH_ATTRIBUTES
from stack.launcher import DEV_SERVER_DYNAMIC_CONFIG, venv_binary
from temporal_saga.codec import data_converter
from temporal_saga.models import (
    Outcome,
    ResetOutcome,
    RunStatus,
    SagaResult,
    SweepAction,
    SweepEntry,
    SweepReport,
)
from temporal_saga.reconcile import SWEEP_WORKFLOW
from temporal_saga.worker import saga_worker
from tests.support.cli import run_cli
from tests.support.parcel_saga import LEDGER, PARCEL_ACTIVITIES, Parcel, ParcelWorkflow
from tests.support.polling import eventually
from worker.clients import service_clients
from worker.runner import checkout_workers
from worker.settings import Settings

pytestmark = pytest.mark.slow

SAGA_QUEUE = "generic-reconcile-sagas"
SWEEP_QUEUE = "generic-reconcile-sweep"
# -- fixtures: a server, the checkout's worker (the sweep), the sagas' worker -----------------


@pytest.fixture(scope="module")
async def server() -> AsyncIterator[WorkflowEnvironment]:
    """A dev server of this module's: the sweep looks at every saga type on it."""
    async with await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(venv_binary("temporal")),
        data_converter=data_converter(),
        ui=False,
        dev_server_log_level="warn",
        dev_server_extra_args=[
            arg
            for setting in DEV_SERVER_DYNAMIC_CONFIG
            for arg in ("--dynamic-config-value", setting)
        ],
        search_attributes=SEARCH_ATTRIBUTES,
    ) as env:
        yield env


@pytest.fixture(scope="module")
def sweep_settings(checkout_settings: Settings) -> Settings:
    return checkout_settings.model_copy(update={"task_queue": SWEEP_QUEUE})


@pytest.fixture(scope="module")
async def sweep_worker(
    server: WorkflowEnvironment, sweep_settings: Settings
) -> AsyncIterator[Worker]:
    """The checkout's worker: where the sweep runs (with the checkout's finder and repair)."""
    async with (
        service_clients(sweep_settings) as clients,
        checkout_workers(server.client, sweep_settings, clients) as worker,
    ):
        yield worker


@pytest.fixture(scope="module")
def trips() -> TripActivities:
    """The trip's providers: their bookings live in this process, so one for the module."""
    return TripActivities()


@pytest.fixture(scope="module")
async def sagas_worker(server: WorkflowEnvironment, trips: TripActivities) -> AsyncIterator[None]:
    """The trip's and the parcel's worker, as their teams would build it: no finder, no
    repair, not even the engine's sweep."""
    async with saga_worker(
        server.client,
        task_queue=SAGA_QUEUE,
        sagas=[TripBookingWorkflow, ParcelWorkflow],
        activities=[*trips.all(), *PARCEL_ACTIVITIES],
        reconciler=False,
    ):
        yield


# -- helpers ---------------------------------------------------------------------------------


def trip(slow_step: str | None = None, slow_seconds: float = 0) -> TripRequest:
    return TripRequest(
        trip_id=f"g{uuid.uuid4().hex[:10]}",
        traveller="Ada",
        flight="LHR-JFK",
        hotel="Hotel Pod",
        car="compact",
        amount_cents=90_000,
        simulate=Simulation(slow_step=slow_step, slow_seconds=slow_seconds),
    )


def parcel(**fields: Any) -> Parcel:
    return Parcel(parcel_id=f"p{uuid.uuid4().hex[:10]}", **fields)


async def start_trip(
    client: Client, request: TripRequest, **options: Any
) -> WorkflowHandle[Any, Any]:
    return await client.start_workflow(
        TripBookingWorkflow.run,
        request,
        id=trip_workflow_id(request.trip_id),
        task_queue=SAGA_QUEUE,
        **options,
    )


async def start_parcel(client: Client, request: Parcel) -> WorkflowHandle[Any, Any]:
    return await client.start_workflow(
        ParcelWorkflow.run, request, id=f"parcel-{request.parcel_id}", task_queue=SAGA_QUEUE
    )


async def running(handle: WorkflowHandle[Any, Any], activity_type: str) -> None:
    """Until `activity_type` runs as an activity of the run."""

    async def pending() -> bool:
        described = await handle.describe()
        return any(
            p.activity_type.name == activity_type
            for p in described.raw_description.pending_activities
        )

    await eventually(pending, f"{handle.id}: {activity_type} running")


async def closed(client: Client, handle: WorkflowHandle[Any, Any], status: str) -> None:
    """Until visibility lists the run as closed with `status` (it lags a little)."""
    query = f"WorkflowId = '{handle.id}' AND ExecutionStatus = '{status}'"

    async def listed() -> bool:
        return (await client.count_workflows(query)).count == 1

    await eventually(listed, f"{handle.id} listed as {status}", seconds=15)


def entries(report: SweepReport) -> dict[str, SweepEntry]:
    return {entry.workflow_id: entry for entry in report.entries}


def reconcile(server: WorkflowEnvironment, settings: Settings, *args: str) -> SweepReport:
    done = run_cli(server, settings, "reconcile", "--json", *args)
    assert done.returncode == 0, done.stdout + done.stderr
    return SweepReport.model_validate_json(done.stdout.strip().splitlines()[-1])


async def running_sweeps(client: Client) -> int:
    query = f"WorkflowType = '{SWEEP_WORKFLOW}' AND ExecutionStatus = 'Running'"
    return (await client.count_workflows(query)).count


def cli_env(server: WorkflowEnvironment, task_queue: str) -> dict[str, str]:
    return {
        **os.environ,
        "TEMPORAL_ADDRESS": server.client.service_client.config.target_host,
        "TEMPORAL_NAMESPACE": "default",
        "CHECKOUT_TASK_QUEUE": task_queue,
    }


CLI = os.path.join(os.path.dirname(sys.executable), "checkout-saga")


# -- the tests -------------------------------------------------------------------------------


@pytest.mark.usefixtures("sweep_worker", "sagas_worker")
async def test_one_reconcile_settles_ended_sagas_by_reset_and_touches_them_once(
    server: WorkflowEnvironment, sweep_settings: Settings, trips: TripActivities
) -> None:
    client = server.client
    # Before the pivot: terminated while its car is being booked (the car arrives late).
    before_pivot = trip("book_car", 3)
    terminated = await start_trip(client, before_pivot)
    # The same, but the run timed out (its execution timeout, 2 s, while the car is booked).
    late = trip("book_car", 4)
    timed_out = await start_trip(client, late, execution_timeout=timedelta(seconds=2))
    # In the pivot: terminated while the payment is taken.
    in_pivot = trip("take_payment", 3)
    paying = await start_trip(client, in_pivot)
    # After the pivot: terminated while the parcel ships (what its own code does after it).
    shipping = parcel(ship_seconds=2)
    forward = await start_parcel(client, shipping)
    # Failed after the pivot: its code would fail again.
    lost = parcel(ship_fails=True)
    failed = await start_parcel(client, lost)
    # Still running: never touched.
    busy = trip("book_car", 60)
    alive = await start_trip(client, busy)

    await running(terminated, "book_car")
    await terminated.terminate(reason="an operator, mid-flight")
    await running(paying, "take_payment")
    await paying.terminate(reason="an operator, mid-payment")
    await running(forward, "ship_parcel")
    await forward.terminate(reason="an operator, mid-shipping")
    await running(alive, "book_car")
    for handle, status in [
        (terminated, "Terminated"),
        (paying, "Terminated"),
        (forward, "Terminated"),
        (timed_out, "TimedOut"),
        (failed, "Failed"),
    ]:
        await closed(client, handle, status)
    alive_run = (await alive.describe()).run_id

    started = time.monotonic()
    report = await asyncio.to_thread(reconcile, server, sweep_settings)
    print(f"reconcile settled 5 sagas in {time.monotonic() - started:.1f} s")

    found = entries(report)
    assert alive.id not in found, report  # running: not even looked at
    for handle in (terminated, timed_out, paying, forward, failed):
        assert found[handle.id].action is SweepAction.RESET, found[handle.id]
        assert found[handle.id].reset is not None
    assert found[terminated.id].run_status is RunStatus.TERMINATED
    assert found[timed_out.id].run_status is RunStatus.TIMED_OUT
    assert found[failed.id].run_status is RunStatus.FAILED
    assert {found[h.id].saga_type for h in (terminated, forward)} == {
        "TripBooking",
        "ParcelDispatch",
    }

    # Before the pivot: its compensations, with its own arguments, newest first.
    for handle, request in ((terminated, before_pivot), (timed_out, late)):
        reset = found[handle.id].reset
        assert reset is not None and reset.outcome is ResetOutcome.COMPENSATED, reset
        assert reset.compensations_done == ["cancel_car", "cancel_hotel", "cancel_flight"]
        result = await client.get_workflow_handle(handle.id, result_type=SagaResult).result()
        assert (result.status, result.reason_code) == (Outcome.REJECTED, "cancelled")
        for kind in ("flight", "hotel", "car"):  # the car: a tombstone its late booking meets
            assert trips._bookings[f"{request.trip_id}:{kind}"] == CANCELLED

    # From the pivot on: its own code goes forward, nothing is undone.
    reset = found[paying.id].reset
    assert reset is not None and reset.outcome is ResetOutcome.WENT_FORWARD, reset
    assert reset.compensations_done == []
    # The group's members in the order they ended, then the pivot.
    assert sorted(reset.steps_done[:3]) == ["book_car", "book_flight", "book_hotel"]
    assert reset.steps_done[3:] == ["take_payment"]
    for kind, what in (("flight", "LHR-JFK"), ("hotel", "Hotel Pod"), ("car", "compact")):
        assert trips._bookings[f"{in_pivot.trip_id}:{kind}"] == what
    reset = found[forward.id].reset
    assert reset is not None and reset.outcome is ResetOutcome.WENT_FORWARD, reset
    assert reset.steps_done == ["hold", "charge", "ship"]
    assert "release" not in LEDGER[shipping.parcel_id]
    assert LEDGER[shipping.parcel_id][-1] == "ship"

    # Its code fails again: reported once, not reset again.
    reset = found[failed.id].reset
    assert reset is not None and reset.outcome is ResetOutcome.FAILED_AGAIN, reset
    assert "no carrier takes it" in (reset.detail or ""), reset
    failed_run = (await failed.describe()).run_id

    # A second run touches none of them, and still leaves the running one alone.
    again = await asyncio.to_thread(reconcile, server, sweep_settings)
    for handle in (terminated, timed_out, paying, forward, failed, alive):
        assert handle.id not in entries(again), again
    assert (await failed.describe()).run_id == failed_run
    described = await alive.describe()
    assert (described.run_id, described.status.name if described.status else None) == (
        alive_run,
        "RUNNING",
    )
    # The car of the trip terminated before its pivot arrived after its cancellation: refused.
    await asyncio.sleep(max(0.0, 3 - (time.monotonic() - started)))
    assert trips._bookings[f"{before_pivot.trip_id}:car"] == CANCELLED
    await alive.terminate(reason="end of the test")


@pytest.mark.usefixtures("sagas_worker")
async def test_reconcile_with_no_worker_fails_within_seconds_and_leaves_no_sweep(
    server: WorkflowEnvironment, sweep_settings: Settings
) -> None:
    client = server.client
    nobody = sweep_settings.model_copy(update={"task_queue": f"nobody-{uuid.uuid4().hex[:8]}"})
    started = time.monotonic()
    done = await asyncio.to_thread(run_cli, server, nobody, "reconcile")
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"no worker polls task queue '{nobody.task_queue}'" in done.stderr, done.stderr
    print(f"no worker: failed in {time.monotonic() - started:.1f} s")
    assert time.monotonic() - started < 20
    assert await running_sweeps(client) == 0

    # Polled, but by a worker that does not run the sweep (the sagas' own, reconciler=False):
    # its first workflow task fails; the sweep is terminated, the command fails.
    polled = sweep_settings.model_copy(update={"task_queue": SAGA_QUEUE})
    started = time.monotonic()
    done = await asyncio.to_thread(run_cli, server, polled, "reconcile")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "no worker ran the sweep" in done.stderr, done.stderr
    print(f"no worker running the sweep: failed in {time.monotonic() - started:.1f} s")
    assert time.monotonic() - started < 30
    assert await running_sweeps(client) == 0
    query = f"WorkflowType = '{SWEEP_WORKFLOW}' AND ExecutionStatus = 'Terminated'"
    assert (await client.count_workflows(query)).count >= 1


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.usefixtures("sweep_worker", "sagas_worker")
async def test_a_reconcile_stopped_leaves_no_sweep_running(
    server: WorkflowEnvironment, stop: signal.Signals
) -> None:
    """SIGTERM (or Ctrl-C) while the sweep waits for a saga it reset: the command ends, the
    sweep it started is terminated; the saga's new run goes on by itself (forward: past its
    pivot)."""
    client = server.client
    handle = await start_parcel(client, parcel(ship_seconds=6))
    await running(handle, "ship_parcel")
    await handle.terminate(reason="an operator")
    await closed(client, handle, "Terminated")
    first_run = (await handle.describe()).run_id

    proc = await asyncio.create_subprocess_exec(
        CLI,
        *("reconcile", "--saga-type", "ParcelDispatch", "--wait", "120"),
        env=cli_env(server, SWEEP_QUEUE),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:

        async def waiting() -> bool:
            reset = (await handle.describe()).run_id != first_run
            return reset and await running_sweeps(client) == 1

        await eventually(waiting, "the sweep reset the saga and waits for it")
        proc.send_signal(stop)
        _, err = await asyncio.wait_for(proc.communicate(), timeout=20)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    stderr = err.decode()
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr, stderr
    assert await running_sweeps(client) == 0
    result = await client.get_workflow_handle(handle.id, result_type=SagaResult).result()
    assert (result.status, result.steps_done) == (Outcome.CONFIRMED, ["hold", "charge", "ship"])


@pytest.mark.usefixtures("sweep_worker")
async def test_the_new_run_is_cancelled_only_once_it_has_caught_up(
    server: WorkflowEnvironment, trips: TripActivities
) -> None:
    """The sagas' worker stops just after the runs end, and starts again only after the
    sweep reset them: the new runs wait for it, and their cancellation with them. Each new
    run first does again what its old run's last completed workflow task did, so the car in
    flight is undone with the rest, and the payment in flight is finished, not compensated.
    (A cancellation in that same workflow task would have been handled first.)"""
    client = server.client
    queue = f"generic-reconcile-late-{uuid.uuid4().hex[:6]}"

    def sagas() -> Worker:
        return saga_worker(
            client,
            task_queue=queue,
            sagas=[TripBookingWorkflow],
            activities=trips.all(),
            reconciler=False,
        )

    booking, paying = trip("book_car", 1), trip("take_payment", 1)
    async with sagas():
        handles = []
        for request, step in ((booking, "book_car"), (paying, "take_payment")):
            handle = await client.start_workflow(
                TripBookingWorkflow.run,
                request,
                id=trip_workflow_id(request.trip_id),
                task_queue=queue,
            )
            await running(handle, step)
            await handle.terminate(reason="an operator, mid-flight")
            handles.append(handle)
    for handle in handles:
        await closed(client, handle, "Terminated")
    old_runs = [(await handle.describe()).run_id for handle in handles]
    # The sweep resets only while Temporal lists a poller of the sagas' task queue: it lists
    # a stopped worker's for a while, which is the window this test resets them in.

    proc = await asyncio.create_subprocess_exec(
        CLI,
        *("reconcile", "--json", "--saga-type", "TripBooking", "--wait", "60"),
        env=cli_env(server, SWEEP_QUEUE),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:

        async def reset() -> bool:
            runs = [(await handle.describe()).run_id for handle in handles]
            return all(new != old for new, old in zip(runs, old_runs, strict=True))

        await eventually(reset, "the sweep reset both")
        await asyncio.sleep(1)  # nothing runs them meanwhile: the sweep waits
        async with sagas():
            out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    found = entries(SweepReport.model_validate_json(out.decode().strip().splitlines()[-1]))

    reset_booking = found[handles[0].id].reset
    assert reset_booking is not None, found
    assert reset_booking.outcome is ResetOutcome.COMPENSATED, reset_booking
    assert reset_booking.compensations_done == ["cancel_car", "cancel_hotel", "cancel_flight"]
    for kind in ("flight", "hotel", "car"):
        assert trips._bookings[f"{booking.trip_id}:{kind}"] == CANCELLED
    reset_paying = found[handles[1].id].reset
    assert reset_paying is not None, found
    assert reset_paying.outcome is ResetOutcome.WENT_FORWARD, reset_paying
    assert reset_paying.compensations_done == []


@pytest.mark.usefixtures("sweep_worker", "sagas_worker")
async def test_a_reconcile_run_by_the_sagas_own_worker_settles_them(
    server: WorkflowEnvironment, sweep_settings: Settings, trips: TripActivities
) -> None:
    """Another team's worker (saga_worker) runs the sweep (--task-queue): the checkout's
    finder runs on the checkout's own task queue, and the team's trip is compensated."""
    client = server.client
    request = trip("book_car", 3)
    handle = await start_trip(client, request)
    await running(handle, "book_car")
    await handle.terminate(reason="an operator, mid-flight")
    await closed(client, handle, "Terminated")

    # A worker of the team's, made by saga_worker with the reconciler (the default).
    async with saga_worker(client, task_queue="team-sweep", sagas=[]):
        report = await asyncio.to_thread(
            reconcile, server, sweep_settings, "--task-queue", "team-sweep"
        )

    reset = entries(report)[handle.id].reset
    assert reset is not None and reset.outcome is ResetOutcome.COMPENSATED, report
    assert reset.compensations_done == ["cancel_car", "cancel_hotel", "cancel_flight"]
    assert trips._bookings[f"{request.trip_id}:flight"] == CANCELLED
