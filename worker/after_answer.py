"""The worker for the work after an answer, whose slots wait while the CPU is busy.

A Temporal worker takes every task it has a free slot for; task priorities order only a
backlog. Short tasks leave slots free even on a saturated machine, so neither a fixed number
of slots nor the SDK's resource-based slots (which always grant a minimum) hold back the
work after the answers. `CpuGatedSlots` does: while the machine's CPU is above `target_cpu`,
it grants one slot per `trickle_seconds`, so committing the stock (and the fan-out, which
follows the commit) waits in the server's backlog and the customers' answers get the CPU.
When the CPU has room again the backlog drains at full speed. The trickle keeps the queue
moving whatever the load (README "Performance").
"""

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

import psutil
from temporalio.client import Client
from temporalio.worker import (
    CustomSlotSupplier,
    FixedSizeSlotSupplier,
    PollerBehaviorSimpleMaximum,
    SlotMarkUsedContext,
    SlotPermit,
    SlotReleaseContext,
    SlotReserveContext,
    Worker,
    WorkerTuner,
)

from models.events import after_answer_queue
from worker.settings import Settings

# How often a waiting reservation looks again.
CPU_POLL_SECONDS = 0.1
# The CPU share is measured over this long: over a burst the cores dip under the target for
# a few hundred milliseconds at a time (the dev server's SQLite writes one transaction at a
# time), and a shorter window let 10-15 commits through at each dip (README "Performance").
CPU_WINDOW_SECONDS = 1.0
MAXIMUM_SLOTS = 100  # the SDK's default for activities


def machine_cpu_share() -> float:
    """Share of all cores busy (0-1) since the previous call (psutil keeps the mark)."""
    return psutil.cpu_percent(interval=None) / 100


class CpuGatedSlots(CustomSlotSupplier):
    def __init__(
        self,
        target_cpu: float,
        trickle_seconds: float,
        maximum_slots: int = MAXIMUM_SLOTS,
        read_cpu: Callable[[], float] = machine_cpu_share,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.target_cpu = target_cpu
        self.trickle_seconds = trickle_seconds
        self.maximum_slots = maximum_slots
        self._read_cpu = read_cpu
        self._clock = clock
        self._read_cpu()  # the first reading only sets the mark
        self._cpu = 0.0
        self._cpu_read_at = float("-inf")  # read at the first reservation
        self._last_grant = clock()
        self.in_use = 0
        self.granted_busy = 0  # granted by the trickle, the CPU above the target

    async def reserve_slot(self, ctx: SlotReserveContext) -> SlotPermit:
        # The CPU reading is what changes: there is no event to wait on.
        while (permit := self.try_grant()) is None:  # noqa: ASYNC110
            await asyncio.sleep(CPU_POLL_SECONDS)
        return permit

    def try_reserve_slot(self, ctx: SlotReserveContext) -> SlotPermit | None:
        return None  # eager tasks would go round the gate

    def mark_slot_used(self, ctx: SlotMarkUsedContext) -> None:
        pass

    def release_slot(self, ctx: SlotReleaseContext) -> None:
        self.in_use -= 1

    def try_grant(self) -> SlotPermit | None:
        if self.in_use >= self.maximum_slots:
            return None
        now = self._clock()
        if self._cpu_share(now) >= self.target_cpu:
            if now - self._last_grant < self.trickle_seconds:
                return None
            self.granted_busy += 1
        self.in_use += 1
        self._last_grant = now
        return SlotPermit()

    def _cpu_share(self, now: float) -> float:
        # One reading per window however many reservations wait: psutil measures from its
        # previous call.
        if now - self._cpu_read_at >= CPU_WINDOW_SECONDS:
            self._cpu = self._read_cpu()
            self._cpu_read_at = now
        return self._cpu


AfterAnswerSlots = CpuGatedSlots | FixedSizeSlotSupplier


def after_answer_slots(settings: Settings) -> AfterAnswerSlots:
    """Activity slots gated by the CPU, from the settings; a target of 1 turns the gate off."""
    if settings.after_answer_target_cpu >= 1:
        return FixedSizeSlotSupplier(MAXIMUM_SLOTS)
    return CpuGatedSlots(settings.after_answer_target_cpu, settings.after_answer_trickle_seconds)


def after_answer_worker(
    client: Client,
    task_queue: str,
    activities: Sequence[Callable[..., Any]],
    slots: AfterAnswerSlots,
) -> Worker:
    """The worker of `after_answer_queue(task_queue)`: what runs after an answer (the commit)."""
    return Worker(
        client,
        task_queue=after_answer_queue(task_queue),
        activities=activities,
        # One poll at a time: a slot granted while the CPU had room is not held for later.
        activity_task_poller_behavior=PollerBehaviorSimpleMaximum(1),
        tuner=WorkerTuner.create_composite(
            # Only activities run here; the workflow slots are the fewest a worker takes.
            workflow_supplier=FixedSizeSlotSupplier(2),
            activity_supplier=slots,
            local_activity_supplier=FixedSizeSlotSupplier(2),
            nexus_supplier=FixedSizeSlotSupplier(2),
        ),
    )
