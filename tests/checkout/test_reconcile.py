"""The reconciler end to end: dev server, the real services and worker. A checkout terminated
after each of its steps (the step's work landed, the next step's service down) leaves its
records open; one sweep settles them: back (cancelled, refunded, released) before the pivot,
forward (committed, announced once) from it on. A running checkout is never touched; a dry
run changes nothing; `checkout-saga reconcile --json` prints the report.
"""

import asyncio
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from temporalio.client import Client, ScheduleOverlapPolicy
from temporalio.testing import WorkflowEnvironment

from models.checkout import (
    CheckoutOptions,
    CheckoutRequest,
    CheckoutStep,
    checkout_workflow_id,
    idempotency_key,
)
from models.payments import CARD_DECLINED, CARD_OK
from temporal_saga.client import ensure_sweep_schedule, skip_compensation, status, sweep_now
from temporal_saga.models import (
    RunStatus,
    SagaProgress,
    SagaResult,
    SweepAction,
    SweepEntry,
    SweepReport,
    SweepRequest,
)
from tests.support.cli import run_cli
from tests.support.polling import eventually
from tests.support.shop import Shop
from worker.settings import Settings
from workflows.checkout import CheckoutWorkflow
from workflows.checkout_sweep import checkout_sweep
from workflows.fanout import job_id

pytestmark = pytest.mark.usefixtures("checkout_worker")


@dataclass(frozen=True)
class Hold:
    """A checkout held after `step`: the next step (`then`) fails (its service answers 503
    on the path prefix), and how to see, on another service, that `step`'s work landed."""

    step: str
    then: str
    service: str
    path: str
    landed: Callable[[Shop, CheckoutRequest], bool]


def _order_is(status: str) -> Callable[[Shop, CheckoutRequest], bool]:
    def landed(shop: Shop, request: CheckoutRequest) -> bool:
        try:
            return bool(shop.get("orders", f"/orders/{request.order_id}")["status"] == status)
        except httpx.HTTPStatusError:
            return False

    return landed


def _reservation_is(status: str) -> Callable[[Shop, CheckoutRequest], bool]:
    def landed(shop: Shop, request: CheckoutRequest) -> bool:
        workflow_id = checkout_workflow_id(request.order_id)
        found = shop.reservation(idempotency_key(workflow_id, CheckoutStep.RESERVE_STOCK))
        return found is not None and found["status"] == status

    return landed


def _charged(shop: Shop, request: CheckoutRequest) -> bool:
    return any(c["status"] == "SUCCEEDED" for c in shop.charges(request.order_id))


HOLDS = [
    Hold("create_order", "reserve_stock", "inventory", "/reservations", _order_is("PENDING")),
    Hold("reserve_stock", "charge_payment", "payments", "/charges", _reservation_is("RESERVED")),
    Hold("charge_payment", "confirm_order", "orders", "/orders/", _charged),
    # The pivot: the stock's commit (after the answer) is what fails.
    Hold("confirm_order", "commit_stock", "inventory", "/reservations/", _order_is("CONFIRMED")),
]
FORWARD = {"confirm_order"}


@pytest.fixture
def shop(services: dict[str, str]) -> Iterator[Shop]:
    shop = Shop(services)
    yield shop
    for service in ("orders", "inventory", "payments"):
        shop.put_fault(service)


def sweep_request(
    settings: Settings, older_than_seconds: int = 0, dry_run: bool = False
) -> SweepRequest:
    """The worker's sweep of the checkout, for records of any age unless told."""
    return checkout_sweep(settings, dry_run, older_than_seconds, wait_seconds=60)


def entry_of(report: SweepReport, request: CheckoutRequest) -> SweepEntry:
    workflow_id = checkout_workflow_id(request.order_id)
    entries = [e for e in report.entries if e.workflow_id == workflow_id]
    assert len(entries) == 1, report
    return entries[0]


async def start(client: Client, settings: Settings, request: CheckoutRequest) -> Any:
    return await client.start_workflow(
        CheckoutWorkflow.run,
        request,
        id=checkout_workflow_id(request.order_id),
        task_queue=settings.task_queue,
    )


async def held_in(handle: Any, activity_type: str) -> None:
    """Until `activity_type` waits as an activity (a local step past its local tries): from
    then on nothing of the run goes on in the worker, so a terminate stops it there. (A run
    terminated while its local steps run in the worker may land a step or two more: the
    reconciler's cancel-first handles that, the tests want one outcome.)"""

    async def waits() -> bool:
        pending = (await handle.describe()).raw_description.pending_activities
        return any(p.activity_type.name == activity_type for p in pending)

    await eventually(waits, f"{activity_type} waits as an activity")


async def wait_until(check: Callable[[], bool], what: str, seconds: float = 30) -> None:
    await eventually(lambda: asyncio.to_thread(check), what, seconds)


def jobs_of(request: CheckoutRequest) -> list[str]:
    event = f"{checkout_workflow_id(request.order_id)}:OrderConfirmed"
    return [job_id(event, "receipt"), job_id(event, "shipping")]


@pytest.mark.parametrize("hold", HOLDS, ids=[h.step for h in HOLDS])
async def test_a_checkout_terminated_after_a_step_is_settled_by_one_sweep(
    dev_env: WorkflowEnvironment, checkout_settings: Settings, shop: Shop, hold: Hold
) -> None:
    client = dev_env.client
    sku = shop.new_sku(4, 1200)
    request = shop.request(CARD_OK, (sku, 2))
    shop.put_fault(hold.service, fail=True, paths=[hold.path])
    handle = await start(client, checkout_settings, request)
    await wait_until(lambda: hold.landed(shop, request), f"{hold.step} landed")
    await held_in(handle, hold.then)
    await handle.terminate(reason="an operator, between two steps")
    shop.put_fault(hold.service)

    report = await sweep_now(client, sweep_request(checkout_settings), checkout_settings.task_queue)

    entry = entry_of(report, request)
    assert (entry.run_status, entry.action) == (RunStatus.TERMINATED, SweepAction.REPAIRED)
    assert entry.repair is not None
    level = shop.level(sku)
    reservation_id = idempotency_key(handle.id, CheckoutStep.RESERVE_STOCK)
    charges = [(c["status"], c["amount_cents"]) for c in shop.charges(request.order_id)]
    if hold.step in FORWARD:
        # The order was confirmed: the checkout's work goes on, as it would have.
        assert entry.repair.outcome == "confirmed"
        assert entry.repair.actions == ["commit_stock"]
        assert shop.order_status(request.order_id) == "CONFIRMED"
        assert (level["available"], level["reserved"], level["committed"]) == (2, 0, 2)
        assert charges == [("SUCCEEDED", 2400)]
        for job in jobs_of(request):  # announced once, with the checkout's event id
            assert (await client.get_workflow_handle(job).result())["status"] == "done"
    else:
        # The cancel won: everything goes back, with the checkout's own keys.
        assert entry.repair.outcome == "cancelled"
        assert entry.repair.actions == ["cancel_order", "refund_payment", "release_stock"]
        assert shop.order_status(request.order_id) == "CANCELLED"
        assert (level["available"], level["reserved"], level["committed"]) == (4, 0, 0)
        reservation = shop.reservation(reservation_id)
        assert reservation is None or reservation["status"] in ("RELEASED", "REJECTED")
        assert all(status != "SUCCEEDED" for status, _ in charges), charges

    # A second sweep finds nothing of it left open.
    again = await sweep_now(client, sweep_request(checkout_settings), checkout_settings.task_queue)
    assert handle.id not in {e.workflow_id for e in again.entries}


async def test_a_running_checkout_is_left_alone_and_a_dry_run_changes_nothing(
    dev_env: WorkflowEnvironment, checkout_settings: Settings, shop: Shop
) -> None:
    client = dev_env.client
    sku = shop.new_sku(3, 900)
    running = shop.request(CARD_OK, (sku, 1))
    abandoned = shop.request(CARD_OK, (sku, 1))

    # Both wait on their confirmation (their own order's path only); one is terminated.
    def hold(*requests: CheckoutRequest) -> None:
        shop.put_fault("orders", fail=True, paths=[f"/orders/{r.order_id}/" for r in requests])

    hold(running, abandoned)
    handles = [await start(client, checkout_settings, r) for r in (running, abandoned)]
    await wait_until(lambda: _charged(shop, running) and _charged(shop, abandoned), "charged")
    await held_in(handles[1], "confirm_order")
    await handles[1].terminate(reason="an operator")

    dry = await sweep_now(
        client, sweep_request(checkout_settings, dry_run=True), checkout_settings.task_queue
    )

    assert entry_of(dry, running).action is SweepAction.LEFT_RUNNING
    assert entry_of(dry, abandoned).action is SweepAction.WOULD_REPAIR
    assert [(c["status"]) for c in shop.charges(abandoned.order_id)] == ["SUCCEEDED"]

    hold(running)  # the abandoned order's cancel goes through
    report = await sweep_now(client, sweep_request(checkout_settings), checkout_settings.task_queue)
    assert entry_of(report, running).action is SweepAction.LEFT_RUNNING
    assert entry_of(report, abandoned).action is SweepAction.REPAIRED
    assert shop.order_status(abandoned.order_id) == "CANCELLED"
    assert [(c["status"]) for c in shop.charges(abandoned.order_id)] == ["REFUNDED"]
    assert [(c["status"]) for c in shop.charges(running.order_id)] == ["SUCCEEDED"]
    shop.put_fault("orders")
    assert (await handles[0].result()).status == "CONFIRMED"


async def test_the_reconcile_command_prints_the_sweep(
    dev_env: WorkflowEnvironment, checkout_settings: Settings, shop: Shop
) -> None:
    sku = shop.new_sku(2, 500)
    request = shop.request(CARD_OK, (sku, 1))
    shop.put_fault("payments", fail=True, paths=["/charges"])
    handle = await start(dev_env.client, checkout_settings, request)
    await wait_until(lambda: _reservation_is("RESERVED")(shop, request), "reserved")
    await held_in(handle, "charge_payment")
    await handle.terminate(reason="an operator")
    shop.put_fault("payments")

    dry = await asyncio.to_thread(
        run_cli,
        dev_env,
        checkout_settings,
        "reconcile",
        "--dry-run",
        "--json",
        "--older-than",
        "0",
    )
    assert dry.returncode == 0, dry.stdout + dry.stderr
    entries = {e["workflow_id"]: e for e in json.loads(dry.stdout)["entries"]}
    assert entries[handle.id]["action"] == "would_repair"
    done = await asyncio.to_thread(
        run_cli, dev_env, checkout_settings, "reconcile", "--older-than", "0"
    )
    assert done.returncode == 0 and handle.id in done.stdout, done.stdout + done.stderr
    assert "cancelled: cancel_order → refund_payment → release_stock" in done.stdout
    assert shop.order_status(request.order_id) == "CANCELLED"


async def test_a_run_closed_with_no_record_open_is_repaired_once(
    dev_env: WorkflowEnvironment, checkout_settings: Settings, shop: Shop
) -> None:
    """Terminated after its pivot, its stock committed since (by hand, say): no record is
    open, but nothing was announced. The sweep finds it by its closed run, repairs it once
    (announced, with the checkout's event id), and leaves it alone after that."""
    client = dev_env.client
    sku = shop.new_sku(2, 700)
    request = shop.request(CARD_OK, (sku, 1))
    shop.put_fault("inventory", fail=True, paths=["/reservations/"])
    handle = await start(client, checkout_settings, request)
    await wait_until(lambda: _order_is("CONFIRMED")(shop, request), "confirmed")
    await held_in(handle, "commit_stock")
    await handle.terminate(reason="an operator, after the pivot")
    shop.put_fault("inventory")
    reservation_id = idempotency_key(handle.id, CheckoutStep.RESERVE_STOCK)
    await asyncio.to_thread(shop.post, "inventory", f"/reservations/{reservation_id}/commit")
    query = f"WorkflowId = '{handle.id}' AND ExecutionStatus = 'Terminated'"

    async def listed() -> bool:  # the visibility store catches up within a few seconds
        return (await client.count_workflows(query)).count == 1

    await eventually(listed, f"{handle.id} listed as terminated", seconds=10)

    report = await sweep_now(client, sweep_request(checkout_settings), checkout_settings.task_queue)

    entry = entry_of(report, request)
    assert entry.records == ["run closed without finishing"]
    assert entry.repair is not None and entry.repair.outcome == "confirmed"
    for job in jobs_of(request):
        assert (await client.get_workflow_handle(job).result())["status"] == "done"
    again = await sweep_now(client, sweep_request(checkout_settings), checkout_settings.task_queue)
    assert handle.id not in {e.workflow_id for e in again.entries}


async def test_what_a_completed_run_left_open_is_an_operators_not_the_sweeps(
    dev_env: WorkflowEnvironment, checkout_settings: Settings, shop: Shop
) -> None:
    """Its stock's release stuck, an operator skipped it (released by hand elsewhere, say):
    the checkout completed with its reservation still RESERVED. The sweep reports it and
    leaves it: undoing more than the operator chose could refund twice."""
    client = dev_env.client
    sku = shop.new_sku(2, 800)
    request = shop.request(CARD_DECLINED, (sku, 1)).model_copy(
        update={"options": CheckoutOptions(compensation_attempts_before_attention=1)}
    )
    shop.put_fault("inventory", fail=True, paths=["/reservations/"])
    handle = await start(client, checkout_settings, request)

    async def stuck() -> bool:
        return bool((await status(client, handle.id, SagaProgress[SagaResult])).stuck)

    await eventually(stuck, "the release stuck")
    await skip_compensation(client, handle.id, "released by hand in the warehouse tool")
    shop.put_fault("inventory")
    assert (await handle.result()).status == "REJECTED"

    report = await sweep_now(client, sweep_request(checkout_settings), checkout_settings.task_queue)

    entry = entry_of(report, request)
    assert (entry.run_status, entry.action) == (RunStatus.COMPLETED, SweepAction.LEFT_COMPLETED)
    assert entry.repair is None
    reservation_id = idempotency_key(handle.id, CheckoutStep.RESERVE_STOCK)
    assert (shop.reservation(reservation_id) or {})["status"] == "RESERVED"


async def test_the_schedule_is_made_once_and_an_operators_pause_is_kept(
    dev_env: WorkflowEnvironment,
) -> None:
    client = dev_env.client
    schedule_id = f"sweep-test-{uuid.uuid4().hex[:8]}"
    request = sweep_request(Settings(), older_than_seconds=600)
    every = timedelta(minutes=5)

    async def ensure(interval: timedelta) -> str:
        return await ensure_sweep_schedule(
            client, schedule_id=schedule_id, request=request, every=interval, task_queue="q"
        )

    assert await ensure(every) == "created"
    assert await ensure(every) == "unchanged"  # a second worker, the same settings
    handle = client.get_schedule_handle(schedule_id)
    await handle.pause(note="an operator: not during the migration")
    assert await ensure(timedelta(minutes=2)) == "updated"
    described = (await handle.describe()).schedule
    assert described.state.paused
    assert described.spec.intervals[0].every == timedelta(minutes=2)
    assert described.policy.overlap is ScheduleOverlapPolicy.SKIP
    await handle.delete()
