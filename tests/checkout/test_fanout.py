"""The fan-out end to end: dev server, the real consumer services, the real worker's code.

The announcing workflows are `tests/support/fanout_probe.py` (events of the test's making)
and the real checkout, which announces its outcome. Each test uses its own order, customer and
event ids; the services are shared.
"""

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner

from activities.events import signal_with_start
from models.checkout import CartItem, CheckoutRequest, CheckoutResult, checkout_workflow_id
from models.consumers import (
    AnalyticsState,
    Announcement,
    ConsumerResult,
    ConsumerStatus,
    LongLivedState,
    LoyaltyState,
)
from models.deadletters import (
    ConsumerKind,
    DeadLetter,
    DeadLetterStatus,
    Delivery,
    DeliveryTarget,
    letter_id,
)
from models.events import (
    ORDER_CONFIRMED_SIGNAL,
    OrderConfirmed,
    OrderRejected,
    RejectedLine,
    event_id,
)
from models.fanout import (
    ANALYTICS_CONSUMER,
    ANALYTICS_WORKFLOW_TYPE,
    analytics_workflow_id,
    loyalty_workflow_id,
)
from models.orders import OrderLine
from models.payments import CARD_DECLINED, CARD_OK
from services.auth import headers_from_env
from starter.checkouts import decide_checkout
from temporal_saga.models import Outcome
from tests.support.cards import card_token
from tests.support.cli import run_cli
from tests.support.fanout_probe import (
    FanoutProbe,
    FanoutProbeBroken,
    FanoutProbeRejected,
)
from tests.support.polling import eventually
from tests.support.stock import new_stocked_sku
from worker.runner import WORKFLOWS
from worker.settings import Settings
from workflows import fanout
from workflows.analytics import AnalyticsWorkflow
from workflows.checkout import CheckoutWorkflow
from workflows.fanout import job_id
from workflows.jobs import SendReceiptWorkflow, ShipOrderWorkflow
from workflows.loyalty import CustomerLoyaltyWorkflow

pytestmark = pytest.mark.usefixtures("checkout_worker")


class Consumers:
    """Reads the consumer services' own records, and turns their faults on and off."""

    def __init__(self, urls: dict[str, str]) -> None:
        self.urls = urls

    def get(self, service: str, path: str, **params: str) -> Any:
        response = httpx.get(
            self.urls[service] + path, params=params, timeout=10, headers=headers_from_env()
        )
        response.raise_for_status()
        return response.json()

    def emails(self, order_id: str) -> list[dict[str, Any]]:
        emails: list[dict[str, Any]] = self.get("email", "/emails", order_id=order_id)
        return emails

    def shipments(self, order_id: str) -> list[dict[str, Any]]:
        shipments: list[dict[str, Any]] = self.get("warehouse", "/shipments", order_id=order_id)
        return shipments

    def ledger(self, customer_id: str) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = self.get("loyalty", "/ledger", customer_id=customer_id)
        return entries

    def analytics(self, order_id: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = self.get("analytics", "/events", order_id=order_id)
        return events

    def letter(self, letter: str) -> DeadLetter:
        return DeadLetter.model_validate(self.get("deadletters", f"/deadletters/{letter}"))

    def letters(self) -> list[DeadLetter]:
        return [DeadLetter.model_validate(item) for item in self.get("deadletters", "/deadletters")]

    def set_fault(self, service: str, *, fail: bool = False, delay_seconds: float = 0) -> None:
        response = httpx.put(
            f"{self.urls[service]}/admin/fault",
            json={"fail": fail, "delay_seconds": delay_seconds},
            timeout=10,
            headers=headers_from_env(),
        )
        response.raise_for_status()

    @contextmanager
    def fault(
        self, service: str, *, fail: bool = False, delay_seconds: float = 0
    ) -> Iterator[None]:
        self.set_fault(service, fail=fail, delay_seconds=delay_seconds)
        try:
            yield
        finally:
            self.set_fault(service)


@pytest.fixture
def consumers(services: dict[str, str]) -> Consumers:
    return Consumers(services)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def confirmed_event(customer_id: str | None = None, total_cents: int = 4500) -> OrderConfirmed:
    order_id = unique("fan")
    return OrderConfirmed(
        event_id=event_id(checkout_workflow_id(order_id), "OrderConfirmed"),
        order_id=order_id,
        customer_id=customer_id or unique("cust"),
        email="fan@example.com",
        lines=[OrderLine(sku="MUG-BLUE", quantity=1, unit_price_cents=total_cents)],
        total_cents=total_cents,
        currency="EUR",
        occurred_at=datetime.now(UTC),
    )


def rejected_event() -> OrderRejected:
    order_id = unique("fan")
    return OrderRejected(
        event_id=event_id(checkout_workflow_id(order_id), "OrderRejected"),
        order_id=order_id,
        customer_id=unique("cust"),
        email="fan@example.com",
        lines=[RejectedLine(sku="MUG-BLUE", quantity=1, unit_price_cents=1000)],
        total_cents=1000,
        currency="EUR",
        occurred_at=datetime.now(UTC),
        reason="Your card was declined; please use another card.",
        reason_code="card_declined",
        failed_step="charge_payment",
    )


async def announce(
    env: WorkflowEnvironment, settings: Settings, event: OrderConfirmed
) -> tuple[Announcement, float]:
    """Run the probe (one workflow that announces `event`); its report and its duration as
    Temporal recorded it (start to close)."""
    handle = await env.client.start_workflow(
        FanoutProbe.run, event, id=unique("probe"), task_queue=settings.task_queue
    )
    report = await handle.result()
    return report, await workflow_seconds(handle)


async def workflow_seconds(handle: WorkflowHandle[Any, Any]) -> float:
    description = await handle.describe()
    assert description.close_time is not None
    return (description.close_time - description.start_time).total_seconds()


async def job_result(client: Client, workflow_id: str) -> ConsumerResult:
    """The result of a job (SendReceipt or ShipOrder: same result type)."""
    handle = client.get_workflow_handle_for(SendReceiptWorkflow.run, workflow_id)
    return await asyncio.wait_for(handle.result(), timeout=60)


async def cli(env: WorkflowEnvironment, settings: Settings, *args: str) -> list[dict[str, Any]]:
    """`checkout-saga dlq ... --json` as a user runs it (in a thread: the worker shares this
    event loop); its JSON lines."""
    done = await asyncio.to_thread(run_cli, env, settings, "dlq", *args, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def deadletters_url(settings: Settings) -> str:
    return str(settings.deadletters_url).rstrip("/")


def settled(state: LongLivedState, received: int) -> bool:
    """`received` signals arrived and each was handled (applied, a duplicate, or dead-lettered)."""
    handled = state.applied + state.duplicates_ignored + state.dead_lettered
    return state.received == received and handled == received


async def loyalty_state(client: Client, customer_id: str) -> LoyaltyState:
    handle = client.get_workflow_handle_for(
        CustomerLoyaltyWorkflow.run, loyalty_workflow_id(customer_id)
    )
    return await handle.query(CustomerLoyaltyWorkflow.state)


async def analytics_state(client: Client, order_id: str) -> AnalyticsState:
    """The state of the order's Analytics shard."""
    handle = client.get_workflow_handle_for(AnalyticsWorkflow.run, analytics_workflow_id(order_id))
    return await handle.query(AnalyticsWorkflow.state)


async def test_announce_starts_jobs_and_signals_reactions(
    dev_env: WorkflowEnvironment, checkout_settings: Settings, consumers: Consumers
) -> None:
    event = confirmed_event(total_cents=4599)

    report, _seconds = await announce(dev_env, checkout_settings, event)

    receipt_id, shipping_id = job_id(event.event_id, "receipt"), job_id(event.event_id, "shipping")
    assert report.jobs_started == [receipt_id, shipping_id]
    assert report.jobs_already_started == [] and report.failed == []
    assert sorted(report.signalled) == sorted(
        [loyalty_workflow_id(event.customer_id), analytics_workflow_id(event.order_id)]
    )
    # The jobs outlive the probe (abandoned children) and do their work.
    assert (await job_result(dev_env.client, receipt_id)).status is ConsumerStatus.DONE
    assert (await job_result(dev_env.client, shipping_id)).status is ConsumerStatus.DONE
    [mail] = consumers.emails(event.order_id)
    assert mail["email_id"] == event.event_id and mail["to"] == "fan@example.com"
    assert "45.99 EUR" in mail["body"]
    [shipment] = consumers.shipments(event.order_id)
    assert shipment["event_id"] == event.event_id
    assert shipment["lines"] == [{"sku": "MUG-BLUE", "quantity": 1}]

    async def reacted() -> bool:
        return bool(consumers.ledger(event.customer_id)) and bool(
            consumers.analytics(event.order_id)
        )

    await eventually(reacted)
    assert [(e["entry_id"], e["points"]) for e in consumers.ledger(event.customer_id)] == [
        (event.event_id, 45)
    ]
    assert [e["event_type"] for e in consumers.analytics(event.order_id)] == ["OrderConfirmed"]
    state = await loyalty_state(dev_env.client, event.customer_id)
    assert state.points_awarded == 45 and state.seen == [event.event_id]
    # Counted by the order's shard, `analytics-{crc32(order_id) % N}`.
    assert event.event_id in (await analytics_state(dev_env.client, event.order_id)).seen


async def test_announce_rejected_signals_analytics_only(
    dev_env: WorkflowEnvironment, checkout_settings: Settings, consumers: Consumers
) -> None:
    event = rejected_event()
    handle = await dev_env.client.start_workflow(
        FanoutProbeRejected.run, event, id=unique("probe"), task_queue=checkout_settings.task_queue
    )

    report = await handle.result()

    assert report.jobs_started == []
    assert report.signalled == [analytics_workflow_id(event.order_id)]

    async def counted() -> bool:
        return bool(consumers.analytics(event.order_id))

    await eventually(counted)
    assert [e["event_type"] for e in consumers.analytics(event.order_id)] == ["OrderRejected"]
    assert consumers.emails(event.order_id) == [] and consumers.shipments(event.order_id) == []
    assert event.event_id in (await analytics_state(dev_env.client, event.order_id)).seen


async def test_email_down_announcer_unaffected_then_redrive_sends_one_email(
    dev_env: WorkflowEnvironment, checkout_settings: Settings, consumers: Consumers
) -> None:
    client, url = dev_env.client, deadletters_url(checkout_settings)
    _, healthy_seconds = await announce(dev_env, checkout_settings, confirmed_event())
    first, second = confirmed_event(), confirmed_event()
    receipts = [job_id(e.event_id, "receipt") for e in (first, second)]

    with consumers.fault("email", fail=True):
        started = time.monotonic()
        report, down_seconds = await announce(dev_env, checkout_settings, first)
        wall_seconds = time.monotonic() - started
        await announce(dev_env, checkout_settings, second)
        # The announcer returned at once, unaffected; the receipt job fails on its own.
        assert report.failed == [] and report.jobs_started[0] == receipts[0]
        assert down_seconds < healthy_seconds + 1.0, (down_seconds, healthy_seconds)
        assert wall_seconds < 3.0
        results = [await job_result(client, receipt) for receipt in receipts]

    # The receipt job gave up after its 5 attempts and left a dead letter.
    assert [r.status for r in results] == [ConsumerStatus.DEAD_LETTERED] * 2
    assert results[0].attempts == 5 and "service_unavailable" in (results[0].error or "")
    letter = consumers.letter(letter_id(first.event_id, "receipt"))
    assert (letter.status, letter.consumer, letter.attempts, letter.failures) == (
        DeadLetterStatus.OPEN,
        "receipt",
        5,
        1,
    )
    assert letter.event == first and letter.target.kind is ConsumerKind.JOB
    assert letter.target.workflow_id == receipts[0]
    assert "503" in letter.error
    assert consumers.emails(first.order_id) == []
    # The other consumers of the same event were not affected.
    assert len(consumers.shipments(first.order_id)) == 1
    listed = await cli(dev_env, checkout_settings, "list", "--status", "OPEN", "--url", url)
    assert {letter_id(e.event_id, "receipt") for e in (first, second)} <= {
        row["letter_id"] for row in listed
    }
    table = await asyncio.to_thread(
        run_cli, dev_env, checkout_settings, "dlq", "list", "--url", url
    )
    assert table.returncode == 0 and "Dead letters" in table.stdout and "receipt" in table.stdout

    # The email service is back: redrive one letter, then all the rest; twice each.
    [outcome] = await cli(dev_env, checkout_settings, "redrive", letter.letter_id, "--url", url)
    assert (outcome["outcome"], outcome["redrive"]) == ("redriven", 1)
    assert outcome["workflow_id"] == f"{receipts[0]}:redrive-1"
    rest = await cli(
        dev_env, checkout_settings, "redrive", "--all", "--consumer", "receipt", "--url", url
    )
    assert letter_id(second.event_id, "receipt") in {o["letter_id"] for o in rest}
    assert letter.letter_id not in {o["letter_id"] for o in rest}
    assert all(o["outcome"] == "redriven" for o in rest)
    for receipt in receipts:
        redone = await job_result(client, f"{receipt}:redrive-1")
        assert redone.status is ConsumerStatus.DONE
    [again] = await cli(dev_env, checkout_settings, "redrive", letter.letter_id, "--url", url)
    assert again["outcome"] == "skipped"
    mine = {letter_id(e.event_id, "receipt") for e in (first, second)}
    again_all = await cli(
        dev_env, checkout_settings, "redrive", "--all", "--consumer", "receipt", "--url", url
    )
    assert mine.isdisjoint({o["letter_id"] for o in again_all})

    # Exactly one email per event, and the letters say REDRIVEN.
    for event in (first, second):
        [mail] = consumers.emails(event.order_id)
        assert mail["email_id"] == event.event_id
        redriven = consumers.letter(letter_id(event.event_id, "receipt"))
        assert (redriven.status, redriven.redrives) == (DeadLetterStatus.REDRIVEN, 1)


async def test_slow_warehouse_does_not_slow_the_announcer(
    dev_env: WorkflowEnvironment, checkout_settings: Settings, consumers: Consumers
) -> None:
    _, fast_seconds = await announce(dev_env, checkout_settings, confirmed_event())
    event = confirmed_event()

    with consumers.fault("warehouse", delay_seconds=3):
        report, slow_seconds = await announce(dev_env, checkout_settings, event)
        shipping = dev_env.client.get_workflow_handle(job_id(event.event_id, "shipping"))
        assert (await job_result(dev_env.client, shipping.id)).status is ConsumerStatus.DONE
        shipping_seconds = await workflow_seconds(shipping)

    assert report.jobs_started == [job_id(event.event_id, c) for c in ("receipt", "shipping")]
    # The shipment took the warehouse's 3 s; the announcer took what it takes without them.
    assert shipping_seconds >= 3.0
    assert slow_seconds < fast_seconds + 1.0, (slow_seconds, fast_seconds)
    assert slow_seconds < 2.0
    assert len(consumers.shipments(event.order_id)) == 1


async def test_duplicates_give_one_email_one_shipment_points_once(
    dev_env: WorkflowEnvironment, checkout_settings: Settings, consumers: Consumers
) -> None:
    client, queue = dev_env.client, checkout_settings.task_queue
    event = confirmed_event(total_cents=2500)
    receipt, shipping = job_id(event.event_id, "receipt"), job_id(event.event_id, "shipping")

    first, _ = await announce(dev_env, checkout_settings, event)
    second, _ = await announce(dev_env, checkout_settings, event)  # the same event again
    # The same signal delivered twice more, the way the fan-out's activity delivers it.
    loyalty = DeliveryTarget(
        kind=ConsumerKind.SIGNAL,
        workflow_type="CustomerLoyalty",
        workflow_id=loyalty_workflow_id(event.customer_id),
        signal="order_confirmed",
        task_queue=queue,
    )
    for _ in range(2):
        await signal_with_start(client, Delivery(target=loyalty, event=event))
    # And each job run once more under another id (as a stray redrive would).
    again = [
        await client.execute_workflow(
            SendReceiptWorkflow.run, event, id=f"{receipt}:dup", task_queue=queue
        ),
        await client.execute_workflow(
            ShipOrderWorkflow.run, event, id=f"{shipping}:dup", task_queue=queue
        ),
    ]

    assert first.jobs_started == [receipt, shipping]
    assert second.jobs_started == [] and second.jobs_already_started == [receipt, shipping]
    assert [r.status for r in again] == [ConsumerStatus.DONE] * 2
    for job in (receipt, shipping):
        assert (await job_result(client, job)).status is ConsumerStatus.DONE

    async def all_received() -> bool:
        return settled(await loyalty_state(client, event.customer_id), 4)

    await eventually(all_received)
    state = await loyalty_state(client, event.customer_id)
    assert (state.applied, state.duplicates_ignored, state.points_awarded) == (1, 3, 25)
    assert len(consumers.emails(event.order_id)) == 1
    assert len(consumers.shipments(event.order_id)) == 1
    assert [e["points"] for e in consumers.ledger(event.customer_id)] == [25]
    balance = consumers.get("loyalty", f"/customers/{event.customer_id}")
    assert balance == {"customer_id": event.customer_id, "points": 25, "entries": 1}

    async def counted() -> bool:
        return bool(consumers.analytics(event.order_id))

    await eventually(counted)
    assert len(consumers.analytics(event.order_id)) == 1


async def test_loyalty_continue_as_new_carries_dedup_state(
    dev_env: WorkflowEnvironment, checkout_settings: Settings, consumers: Consumers
) -> None:
    client, queue = dev_env.client, checkout_settings.task_queue
    customer = unique("cust")
    handle = await client.start_workflow(
        CustomerLoyaltyWorkflow.run,
        LoyaltyState(continue_after=3),
        id=loyalty_workflow_id(customer),
        task_queue=queue,
    )
    first_run = (await handle.describe()).run_id
    events = [confirmed_event(customer, total_cents=1000 * (i + 1)) for i in range(4)]
    target = DeliveryTarget(
        kind=ConsumerKind.SIGNAL,
        workflow_type="CustomerLoyalty",
        workflow_id=loyalty_workflow_id(customer),
        signal="order_confirmed",
        task_queue=queue,
    )

    for event in events[:3]:
        await signal_with_start(client, Delivery(target=target, event=event))

    async def continued() -> bool:
        state = await loyalty_state(client, customer)
        return state.generation == 2 and (await handle.describe()).run_id != first_run

    await eventually(continued)
    carried = await loyalty_state(client, customer)
    assert set(carried.seen) == {e.event_id for e in events[:3]}
    assert (carried.applied, carried.points_awarded, carried.continue_after) == (3, 60, 3)

    # In the new run: a duplicate of an event of the old run, and a new one.
    await signal_with_start(client, Delivery(target=target, event=events[0]))
    await signal_with_start(client, Delivery(target=target, event=events[3]))

    async def received() -> bool:
        return settled(await loyalty_state(client, customer), 5)

    await eventually(received)
    state = await loyalty_state(client, customer)
    assert (state.applied, state.duplicates_ignored, state.points_awarded) == (4, 1, 100)
    assert state.generation == 2
    # The new run called the loyalty service once (the new event): the duplicate was known.
    history = await client.get_workflow_handle(loyalty_workflow_id(customer)).fetch_history()
    # Consumers call their service through a local activity: one marker per call.
    calls = [
        json.loads(e.marker_recorded_event_attributes.details["data"].payloads[0].data)
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
        and e.marker_recorded_event_attributes.marker_name == "core_local_activity"
    ]
    assert [call["activity_type"] for call in calls] == ["add_loyalty_points"]
    assert sorted(e["points"] for e in consumers.ledger(customer)) == [10, 20, 30, 40]


async def test_analytics_continue_as_new_carries_counts_and_dedup(
    dev_env: WorkflowEnvironment, checkout_settings: Settings, consumers: Consumers
) -> None:
    client, queue = dev_env.client, checkout_settings.task_queue
    workflow_id = unique("analytics-test")
    handle = await client.start_workflow(
        AnalyticsWorkflow.run, AnalyticsState(continue_after=2), id=workflow_id, task_queue=queue
    )
    confirmed, rejected = confirmed_event(), rejected_event()
    await handle.signal(AnalyticsWorkflow.order_confirmed, confirmed)
    await handle.signal(AnalyticsWorkflow.order_rejected, rejected)

    async def continued() -> bool:
        return (await handle.query(AnalyticsWorkflow.state)).generation == 2

    await eventually(continued)
    await handle.signal(AnalyticsWorkflow.order_confirmed, confirmed)  # a duplicate

    async def received() -> bool:
        return settled(await handle.query(AnalyticsWorkflow.state), 3)

    await eventually(received)
    state = await handle.query(AnalyticsWorkflow.state)
    assert state.counts == {"OrderConfirmed": 1, "OrderRejected": 1}
    assert (state.applied, state.duplicates_ignored) == (2, 1)
    assert len(consumers.analytics(confirmed.order_id)) == 1
    await handle.terminate("test done")


async def test_loyalty_down_dead_letters_then_redrive_books_points_once(
    dev_env: WorkflowEnvironment, checkout_settings: Settings, consumers: Consumers
) -> None:
    client, url = dev_env.client, deadletters_url(checkout_settings)
    event = confirmed_event(total_cents=1234)
    letter = letter_id(event.event_id, "loyalty")

    with consumers.fault("loyalty", fail=True):
        report, _ = await announce(dev_env, checkout_settings, event)
        assert report.failed == []  # the signal was delivered; its consumer fails later

        async def dead_lettered() -> bool:
            return (await loyalty_state(client, event.customer_id)).dead_lettered == 1

        await eventually(dead_lettered)

    written = consumers.letter(letter)
    assert (written.status, written.target.kind, written.attempts) == (
        DeadLetterStatus.OPEN,
        ConsumerKind.SIGNAL,
        5,
    )
    assert written.target.workflow_id == loyalty_workflow_id(event.customer_id)
    assert consumers.ledger(event.customer_id) == []

    for _ in range(2):  # redriving twice books the points once
        await cli(dev_env, checkout_settings, "redrive", letter, "--url", url)

    async def applied() -> bool:
        return (await loyalty_state(client, event.customer_id)).applied == 1

    await eventually(applied)
    assert [e["points"] for e in consumers.ledger(event.customer_id)] == [12]
    assert consumers.letter(letter).status is DeadLetterStatus.REDRIVEN


async def test_analytics_down_dead_letters_then_redrive_goes_to_the_same_shard(
    dev_env: WorkflowEnvironment, checkout_settings: Settings, consumers: Consumers
) -> None:
    client, url = dev_env.client, deadletters_url(checkout_settings)
    event = confirmed_event()
    shard = analytics_workflow_id(event.order_id)
    letter = letter_id(event.event_id, ANALYTICS_CONSUMER)

    with consumers.fault("analytics", fail=True):
        report, _ = await announce(dev_env, checkout_settings, event)
        assert shard in report.signalled  # delivered to the shard; its consumer fails there

        async def dead_lettered() -> bool:
            return letter in {written.letter_id for written in consumers.letters()}

        await eventually(dead_lettered)

    written = consumers.letter(letter)
    # The shard wrote its own id as the target: the redrive needs no hashing, and goes where
    # the event went even if the shard count changed since.
    assert (written.status, written.target.kind) == (DeadLetterStatus.OPEN, ConsumerKind.SIGNAL)
    assert (written.target.workflow_type, written.target.workflow_id) == (
        ANALYTICS_WORKFLOW_TYPE,
        shard,
    )
    assert written.target.signal == ORDER_CONFIRMED_SIGNAL
    assert consumers.analytics(event.order_id) == []
    assert event.event_id not in (await analytics_state(client, event.order_id)).seen

    [outcome] = await cli(dev_env, checkout_settings, "redrive", letter, "--url", url)

    assert (outcome["outcome"], outcome["workflow_id"]) == ("redriven", shard)

    async def counted() -> bool:
        return event.event_id in (await analytics_state(client, event.order_id)).seen

    await eventually(counted)
    assert [e["event_id"] for e in consumers.analytics(event.order_id)] == [event.event_id]
    assert consumers.letter(letter).status is DeadLetterStatus.REDRIVEN


async def test_undeliverable_signal_does_not_fail_the_announcer(
    dev_env: WorkflowEnvironment, checkout_settings: Settings, consumers: Consumers
) -> None:
    event = confirmed_event()
    report = await dev_env.client.execute_workflow(
        FanoutProbeBroken.run, event, id=unique("probe"), task_queue=checkout_settings.task_queue
    )

    assert report.failed == ["broken"] and report.signalled == []
    letter = consumers.letter(letter_id(event.event_id, "broken"))
    assert letter.status is DeadLetterStatus.OPEN and "invalid_target" in letter.error


# --- The real checkout announces its outcome -------------------------------------------------


def checkout_request(consumers: Consumers, card: str = CARD_OK) -> CheckoutRequest:
    sku = new_stocked_sku(consumers.urls, "FAN", unit_price_cents=1500)
    return CheckoutRequest(
        order_id=unique("fanco"),
        customer_id=unique("cust"),
        email="buyer@example.com",
        payment_token=card_token(consumers.urls["payments"], card),
        items=[CartItem(sku=sku, quantity=2)],
    )


async def checkout(
    env: WorkflowEnvironment, settings: Settings, request: CheckoutRequest
) -> tuple[CheckoutResult, float]:
    handle = await env.client.start_workflow(
        CheckoutWorkflow.run,
        request,
        id=checkout_workflow_id(request.order_id),
        task_queue=settings.task_queue,
    )
    result = await handle.result()
    return result, await workflow_seconds(handle)


async def test_checkout_confirmed_announces_and_is_not_held_up_by_a_down_email(
    dev_env: WorkflowEnvironment, checkout_settings: Settings, consumers: Consumers
) -> None:
    client, url = dev_env.client, deadletters_url(checkout_settings)
    request = checkout_request(consumers)
    result, healthy_seconds = await checkout(dev_env, checkout_settings, request)
    assert result.status is Outcome.CONFIRMED
    event_of = event_id(checkout_workflow_id(request.order_id), "OrderConfirmed")
    assert (await job_result(client, job_id(event_of, "receipt"))).status is ConsumerStatus.DONE
    assert (await job_result(client, job_id(event_of, "shipping"))).status is ConsumerStatus.DONE
    assert [m["email_id"] for m in consumers.emails(request.order_id)] == [event_of]
    assert [s["event_id"] for s in consumers.shipments(request.order_id)] == [event_of]

    async def reacted() -> bool:
        return bool(consumers.ledger(request.customer_id)) and bool(
            consumers.analytics(request.order_id)
        )

    await eventually(reacted)
    assert [e["points"] for e in consumers.ledger(request.customer_id)] == [30]

    down_request = checkout_request(consumers)
    with consumers.fault("email", fail=True):
        down, down_seconds = await checkout(dev_env, checkout_settings, down_request)
        down_event = event_id(checkout_workflow_id(down_request.order_id), "OrderConfirmed")
        receipt = await job_result(client, job_id(down_event, "receipt"))
    # The customer got the same answer, as fast; only the receipt waits for a redrive.
    assert down.status is Outcome.CONFIRMED
    assert down_seconds < healthy_seconds + 1.0, (down_seconds, healthy_seconds)
    assert receipt.status is ConsumerStatus.DEAD_LETTERED
    assert consumers.emails(down_request.order_id) == []
    await cli(dev_env, checkout_settings, "redrive", letter_id(down_event, "receipt"), "--url", url)
    await job_result(client, f"{job_id(down_event, 'receipt')}:redrive-1")
    assert len(consumers.emails(down_request.order_id)) == 1


async def test_checkout_rejected_announces_to_analytics(
    dev_env: WorkflowEnvironment, checkout_settings: Settings, consumers: Consumers
) -> None:
    request = checkout_request(consumers, card=CARD_DECLINED)

    result, _ = await checkout(dev_env, checkout_settings, request)

    assert result.status is Outcome.REJECTED and result.reason_code == "card_declined"

    async def counted() -> bool:
        return bool(consumers.analytics(request.order_id))

    await eventually(counted)
    [recorded] = consumers.analytics(request.order_id)
    assert recorded["event_type"] == "OrderRejected"
    assert recorded["event_id"] == event_id(checkout_workflow_id(request.order_id), "OrderRejected")
    # The checkout signalled its order's shard.
    state = await analytics_state(dev_env.client, request.order_id)
    assert recorded["event_id"] in state.seen
    assert consumers.emails(request.order_id) == [] and consumers.shipments(request.order_id) == []


async def test_checkout_announced_under_one_shard_count_replays_under_another(
    dev_env: WorkflowEnvironment,
    checkout_settings: Settings,
    consumers: Consumers,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A deploy that changes ANALYTICS_SHARDS does not break the checkouts it finds running:
    the fan-out's signal is a local activity, whose marker records its result (the run id
    signalled) but not its input (the target id), so a replay under another shard count
    issues the same commands. Only an announcement not yet recorded goes by the new count."""
    request = checkout_request(consumers)
    result, _ = await checkout(dev_env, checkout_settings, request)
    assert result.status is Outcome.CONFIRMED
    handle = dev_env.client.get_workflow_handle(checkout_workflow_id(request.order_id))
    history = await handle.fetch_history()
    recorded = analytics_workflow_id(request.order_id)
    # A shard count under which this order lands elsewhere.
    other = next(n for n in range(2, 64) if analytics_workflow_id(request.order_id, n) != recorded)
    computed: list[str] = []

    def under_other_count(order_id: str) -> str:
        computed.append(analytics_workflow_id(order_id, other))
        return computed[-1]

    # Unsandboxed: the replay runs this process's workflows.fanout, patched. Only for the
    # replay, and no checkout runs meanwhile (the worker shares the module).
    monkeypatch.setattr(fanout, "analytics_workflow_id", under_other_count)
    replay = Replayer(
        workflows=WORKFLOWS,
        data_converter=dev_env.client.data_converter,
        workflow_runner=UnsandboxedWorkflowRunner(),
    )
    replayed = await replay.replay_workflow(history, raise_on_replay_failure=False)
    monkeypatch.undo()

    assert replayed.replay_failure is None, repr(replayed.replay_failure)
    assert computed and set(computed) != {recorded}  # the replay did aim elsewhere


async def test_slow_warehouse_does_not_slow_the_checkout(
    dev_env: WorkflowEnvironment, checkout_settings: Settings, consumers: Consumers
) -> None:
    async def timed(request: CheckoutRequest) -> tuple[CheckoutResult, float, float]:
        """The answer, the customer's wait for it, and the whole checkout's duration."""
        started = time.monotonic()
        answer, handle = await decide_checkout(
            dev_env.client, request, checkout_settings.task_queue
        )
        waited = time.monotonic() - started
        assert (await handle.result()).status is answer.status
        return answer, waited, await workflow_seconds(handle)

    fast, fast_wait, fast_run = await timed(checkout_request(consumers))
    slow_request = checkout_request(consumers)
    with consumers.fault("warehouse", delay_seconds=3):
        slow, slow_wait, slow_run = await timed(slow_request)
        shipping = job_id(
            event_id(checkout_workflow_id(slow_request.order_id), "OrderConfirmed"), "shipping"
        )
        assert (await job_result(dev_env.client, shipping)).status is ConsumerStatus.DONE
        shipping_seconds = await workflow_seconds(dev_env.client.get_workflow_handle(shipping))

    assert fast.status is slow.status is Outcome.CONFIRMED
    # The shipment waited for the slow warehouse; neither the answer nor the checkout did.
    assert shipping_seconds >= 3.0
    assert slow_wait < fast_wait + 1.0, (slow_wait, fast_wait)
    assert slow_run < fast_run + 1.0, (slow_run, fast_run)
    assert len(consumers.shipments(slow_request.order_id)) == 1
