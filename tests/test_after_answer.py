"""The after-answer worker: its slots wait while the CPU is busy (until a task has waited
max_wait), and the checkout's commit runs on its queue, after the answer, once the CPU has
room, or on a real server once it has waited max_wait whatever the CPU."""

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import cast

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import SlotReleaseContext, SlotReserveContext

from bench.checkout_activities import CheckoutActivitiesWorkflow
from models.checkout import CheckoutStep, checkout_workflow_id
from models.events import AFTER_ANSWER, after_answer_queue
from starter.checkouts import decide_checkout
from temporal_saga.client import decide
from temporal_saga.models import Outcome
from tests.support.fake_shop import JOURNAL, scripted_checkout_workers, scripted_request
from worker.after_answer import (
    AnswersInFlight,
    CpuGatedSlots,
    after_answer_slots,
    server_backlog_age,
)
from worker.settings import Settings
from workflows.checkout import CheckoutWorkflow

TASK_QUEUE = "after-answer-tests"
# Any context: the gate does not look at it.
CONTEXT = cast(SlotReserveContext, None)


@dataclass
class Machine:
    """A CPU reading, a clock and a backlog age the test sets."""

    cpu: float = 0.0
    now: float = 1000.0
    backlog_age: float | None = None

    def read_cpu(self) -> float:
        return self.cpu

    def clock(self) -> float:
        return self.now

    async def read_backlog_age(self) -> float | None:
        return self.backlog_age


def gate(
    machine: Machine,
    maximum_slots: int = 3,
    max_wait: float = 30.0,
    answers: AnswersInFlight | None = None,
) -> CpuGatedSlots:
    return CpuGatedSlots(
        target_cpu=0.8,
        max_wait_seconds=max_wait,
        maximum_slots=maximum_slots,
        read_cpu=machine.read_cpu,
        clock=machine.clock,
        backlog_age=machine.read_backlog_age,
        answers=answers,
    )


def test_cpu_with_room_grants_every_free_slot() -> None:
    machine = Machine(cpu=0.3)
    slots = gate(machine, maximum_slots=3)
    machine.now += 0.1
    assert all(slots.try_grant() is not None for _ in range(3))
    assert slots.try_grant() is None  # all three in use
    slots.release_slot(cast(SlotReleaseContext, None))
    assert slots.try_grant() is not None
    assert slots.granted_busy == 0


def test_one_busy_reading_holds_the_slots_for_a_second() -> None:
    machine = Machine(cpu=0.3)
    slots = gate(machine, maximum_slots=10)
    assert slots.try_grant() is not None
    machine.cpu, machine.now = 0.95, machine.now + 0.1
    assert slots.try_grant() is None  # the next reading closes the gate at once
    machine.cpu = 0.5  # a dip, as within a burst
    for _ in range(9):
        machine.now += 0.1
        assert slots.try_grant() is None  # the busy reading is still within the last second
    machine.now += 0.11
    assert slots.try_grant() is not None  # a whole second with room
    assert slots.granted_busy == 0


def test_readings_are_taken_every_tenth_of_a_second_whoever_asks() -> None:
    machine = Machine(cpu=0.3)
    slots = gate(machine, maximum_slots=10)
    assert slots.try_grant() is not None
    machine.cpu = 0.95
    machine.now += 0.04
    assert slots.try_grant() is not None  # no new reading yet
    machine.now += 0.07
    assert slots.try_grant() is None


async def test_a_task_that_waited_max_wait_opens_the_slots() -> None:
    machine = Machine(cpu=0.95, backlog_age=12.0)
    slots = gate(machine, maximum_slots=10, max_wait=30)
    reservation = asyncio.ensure_future(slots.reserve_slot(CONTEXT))
    await asyncio.sleep(0.3)
    assert not reservation.done()  # busy, and the oldest task has waited 12 s
    machine.backlog_age = 31.0
    machine.now += 1.0  # the age is asked again once a second
    await asyncio.wait_for(reservation, timeout=2)
    assert slots.granted_busy == 1
    assert slots.try_grant() is not None  # drains until the server says otherwise
    machine.backlog_age = 3.0
    machine.now += 1.0
    held = asyncio.ensure_future(slots.reserve_slot(CONTEXT))
    await asyncio.sleep(0.3)
    assert not held.done()
    held.cancel()


def test_without_the_servers_figure_the_time_since_the_last_grant_counts() -> None:
    machine = Machine(cpu=0.3, backlog_age=None)
    slots = gate(machine, maximum_slots=10, max_wait=5)
    assert slots.try_grant() is not None
    machine.cpu = 0.95
    machine.now += 4.9
    assert slots.try_grant() is None
    machine.now += 0.2
    assert slots.try_grant() is not None
    assert slots.try_grant() is None  # the next one waits max_wait again
    assert slots.granted_busy == 1


def test_with_no_customer_waiting_the_slots_open_whatever_the_cpu() -> None:
    machine = Machine(cpu=0.95)
    answers = AnswersInFlight(clock=machine.clock)
    slots = gate(machine, max_wait=3600, answers=answers)
    assert slots.try_grant() is not None  # busy, but no one waits: the backlog drains
    answers.started()
    machine.now += 0.1
    assert slots.try_grant() is None  # a step runs and the CPU is busy
    answers.finished()
    machine.now += 0.4
    assert slots.try_grant() is None  # the checkout's next step may follow
    machine.now += 0.11
    assert slots.try_grant() is not None
    assert slots.granted_busy == 0


async def test_the_steps_before_the_answer_are_counted_activities_and_local(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    seen: list[tuple[str, bool]] = []

    class Recorded(AnswersInFlight):
        def started(self) -> None:
            seen.append((activity.info().activity_type, activity.info().is_local))
            super().started()

    answers = Recorded()
    steps = [step.value for step in CheckoutStep]
    client = time_skipping_env.client
    slots = after_answer_slots(Settings(), answers)
    interceptor = answers.interceptor(steps)
    async with scripted_checkout_workers(
        client,
        TASK_QUEUE,
        slots,
        interceptors=[interceptor],
        extra_workflows=[CheckoutActivitiesWorkflow],
    ):
        for saga in (CheckoutActivitiesWorkflow, CheckoutWorkflow):
            request = scripted_request("count")
            workflow_id = checkout_workflow_id(request.order_id)
            decision, handle = await decide(
                client, saga, request, workflow_id=workflow_id, task_queue=TASK_QUEUE
            )
            assert decision.status is Outcome.CONFIRMED
            await asyncio.wait_for(handle.result(), timeout=30)
    # The four steps of each checkout, and nothing after the answer (the commit runs on the
    # after-answer worker, the fan-out's calls are not steps).
    assert seen == [(step, False) for step in steps] + [(step, True) for step in steps]
    assert answers.running == 0


def test_the_gate_is_off_unless_a_target_below_one_is_set() -> None:
    assert Settings().after_answer_target_cpu == 1
    assert not isinstance(after_answer_slots(Settings()), CpuGatedSlots)
    gate = after_answer_slots(Settings(after_answer_target_cpu=0.8))
    assert isinstance(gate, CpuGatedSlots) and gate.target_cpu == 0.8


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("after_answer_target_cpu", 0),
        ("after_answer_target_cpu", 1.5),
        ("after_answer_max_wait_seconds", 0),
    ],
)
def test_settings_refuse_a_gate_that_never_or_always_opens(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        Settings.model_validate({field: value})


async def test_reservation_waits_until_the_cpu_has_room() -> None:
    machine = Machine(cpu=0.95)
    slots = gate(machine, max_wait=3600)
    reservation = asyncio.ensure_future(slots.reserve_slot(CONTEXT))
    await asyncio.sleep(0.5)
    assert not reservation.done()
    machine.cpu = 0.2
    machine.now += 1.1  # a whole second of readings with room
    await asyncio.wait_for(reservation, timeout=2)
    assert slots.in_use == 1


@dataclass
class Gated:
    env: WorkflowEnvironment
    machine: Machine


@pytest.fixture
async def gated(time_skipping_env: WorkflowEnvironment) -> AsyncIterator[Gated]:
    """The checkout with scripted activities; its after-answer worker reads the test's CPU."""
    machine = Machine(cpu=1.0)
    slots = CpuGatedSlots(
        target_cpu=0.8, max_wait_seconds=3600, read_cpu=machine.read_cpu, clock=machine.clock
    )
    async with scripted_checkout_workers(time_skipping_env.client, TASK_QUEUE, slots):
        yield Gated(time_skipping_env, machine)


async def test_commit_waits_for_room_after_the_answer(gated: Gated) -> None:
    request = scripted_request("aa", customer="customer-8")
    order_id = request.order_id
    decision, handle = await decide_checkout(gated.env.client, request, TASK_QUEUE)
    assert decision.status is Outcome.CONFIRMED
    # The answer is out; the CPU is "busy", so the commit waits in the server's backlog.
    await asyncio.sleep(1.0)
    assert "commit_stock" not in JOURNAL[order_id]
    description = await handle.describe()
    assert [p.activity_type.name for p in description.raw_description.pending_activities] == [
        "commit_stock"
    ]
    gated.machine.cpu = 0.1
    gated.machine.now += 1.1
    result = await asyncio.wait_for(handle.result(), timeout=30)
    assert result.status is Outcome.CONFIRMED
    assert "commit_stock:done" in JOURNAL[order_id]
    commits = [
        event.activity_task_scheduled_event_attributes
        async for event in handle.fetch_history_events()
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and event.activity_task_scheduled_event_attributes.activity_type.name == "commit_stock"
    ]
    assert [c.task_queue.name for c in commits] == [after_answer_queue(TASK_QUEUE)]
    assert commits[0].priority.priority_key == AFTER_ANSWER.priority_key


async def test_on_a_busy_machine_the_commit_waits_about_max_wait(
    dev_env: WorkflowEnvironment,
) -> None:
    """On a real server the backlog's age comes from its task queue statistics: with the CPU
    "busy" throughout, the commit runs once it has waited max_wait, and no sooner."""
    task_queue = "after-answer-max-wait"
    client = dev_env.client
    ages: list[float | None] = []
    server_age = server_backlog_age(client, after_answer_queue(task_queue))

    async def recorded_age() -> float | None:
        ages.append(await server_age())
        return ages[-1]

    machine = Machine(cpu=1.0)
    slots = CpuGatedSlots(
        target_cpu=0.8,
        max_wait_seconds=2,
        read_cpu=machine.read_cpu,
        clock=time.monotonic,
        backlog_age=recorded_age,
    )
    async with scripted_checkout_workers(client, task_queue, slots):
        request = scripted_request("mw", customer="customer-9")
        decision, handle = await decide_checkout(client, request, task_queue)
        answered = time.monotonic()
        assert decision.status is Outcome.CONFIRMED
        result = await asyncio.wait_for(handle.result(), timeout=30)
        committed = time.monotonic()
    assert result.status is Outcome.CONFIRMED
    assert "commit_stock:done" in JOURNAL[request.order_id]
    # Granted by the backlog's age (the CPU never had room), as the server reported it; the
    # server refreshes its statistics every few seconds, so the wait may be a little longer.
    assert slots.granted_busy >= 1
    assert any(age is not None and age >= 2 for age in ages), ages
    assert 1.5 <= committed - answered <= 15
