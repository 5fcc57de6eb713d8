"""The after-answer worker: its slots wait while the CPU is busy (one per trickle), and the
checkout's commit runs on its queue, after the answer, once the CPU has room."""

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import cast

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import SlotReleaseContext, SlotReserveContext

from models.checkout import CheckoutStatus
from models.events import AFTER_ANSWER, after_answer_queue
from starter.checkouts import decide_checkout
from tests.fake_shop import JOURNAL, scripted_checkout_workers, scripted_request
from worker.after_answer import CpuGatedSlots, after_answer_slots
from worker.settings import Settings

TASK_QUEUE = "after-answer-tests"
# Any context: the gate does not look at it.
CONTEXT = cast(SlotReserveContext, None)


@dataclass
class Machine:
    """A CPU reading and a clock the test sets."""

    cpu: float = 0.0
    now: float = 1000.0

    def read_cpu(self) -> float:
        return self.cpu

    def clock(self) -> float:
        return self.now


def gate(machine: Machine, maximum_slots: int = 3) -> CpuGatedSlots:
    return CpuGatedSlots(
        target_cpu=0.8,
        trickle_seconds=1.0,
        maximum_slots=maximum_slots,
        read_cpu=machine.read_cpu,
        clock=machine.clock,
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


def test_busy_cpu_grants_one_slot_per_trickle() -> None:
    machine = Machine(cpu=0.95)
    slots = gate(machine, maximum_slots=10)
    machine.now += 0.5
    assert slots.try_grant() is None  # busy, and half a trickle since the last grant
    machine.now += 0.5
    assert slots.try_grant() is not None  # a trickle has passed
    assert slots.try_grant() is None
    machine.now += 0.99
    assert slots.try_grant() is None
    machine.now += 0.02
    assert slots.try_grant() is not None
    assert slots.granted_busy == 2
    machine.cpu = 0.5
    machine.now += 0.5
    assert slots.try_grant() is None  # still the busy reading: a window is 1 s
    machine.now += 0.5  # the next reading
    assert slots.try_grant() is not None
    assert slots.try_grant() is not None  # room again: no waiting between grants


def test_settings_target_of_one_turns_the_gate_off() -> None:
    assert isinstance(after_answer_slots(Settings(after_answer_target_cpu=0.8)), CpuGatedSlots)
    off = after_answer_slots(Settings(after_answer_target_cpu=1))
    assert not isinstance(off, CpuGatedSlots)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("after_answer_target_cpu", 0),
        ("after_answer_target_cpu", 1.5),
        ("after_answer_trickle_seconds", 0),
    ],
)
def test_settings_refuse_a_gate_that_never_or_always_opens(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        Settings.model_validate({field: value})


async def test_reservation_waits_until_the_cpu_has_room() -> None:
    machine = Machine(cpu=0.95)
    slots = CpuGatedSlots(
        target_cpu=0.8,
        trickle_seconds=3600,
        read_cpu=machine.read_cpu,
        clock=machine.clock,
    )
    reservation = asyncio.ensure_future(slots.reserve_slot(CONTEXT))
    await asyncio.sleep(0.5)
    assert not reservation.done()
    machine.cpu = 0.2
    machine.now += 1.0  # the next reading
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
        target_cpu=0.8, trickle_seconds=3600, read_cpu=machine.read_cpu, clock=machine.clock
    )
    async with scripted_checkout_workers(time_skipping_env.client, TASK_QUEUE, slots):
        yield Gated(time_skipping_env, machine)


async def test_commit_waits_for_room_after_the_answer(gated: Gated) -> None:
    request = scripted_request("aa", customer="customer-8")
    order_id = request.order_id
    decision, handle = await decide_checkout(gated.env.client, request, TASK_QUEUE)
    assert decision.status is CheckoutStatus.CONFIRMED
    # The answer is out; the CPU is "busy", so the commit waits in the server's backlog.
    await asyncio.sleep(1.0)
    assert "commit_stock" not in JOURNAL[order_id]
    description = await handle.describe()
    assert [p.activity_type.name for p in description.raw_description.pending_activities] == [
        "commit_stock"
    ]
    gated.machine.cpu = 0.1
    gated.machine.now += 1
    result = await asyncio.wait_for(handle.result(), timeout=30)
    assert result.status is CheckoutStatus.CONFIRMED
    assert "commit_stock:done" in JOURNAL[order_id]
    commits = [
        event.activity_task_scheduled_event_attributes
        async for event in handle.fetch_history_events()
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and event.activity_task_scheduled_event_attributes.activity_type.name == "commit_stock"
    ]
    assert [c.task_queue.name for c in commits] == [after_answer_queue(TASK_QUEUE)]
    assert commits[0].priority.priority_key == AFTER_ANSWER.priority_key
