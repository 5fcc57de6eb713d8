"""The worker for the work after an answer, whose slots wait while customers wait for theirs.

A Temporal worker takes every task it has a free slot for; task priorities order only a
backlog. Short tasks leave slots free even on a saturated machine, so neither a fixed number
of slots nor the SDK's resource-based slots (which always grant a minimum) hold back the
work after the answers. `CpuGatedSlots` does, while both hold:

- customers are waiting: a step that decides an answer ran in this worker within the last
  half second (`AnswersInFlight`, fed by an activity interceptor on the main worker);
- the CPU is busy: one of its readings (every 0.1 s) over the last second reached
  `target_cpu`; the CPU of the worker's own container, its cgroup (worker/container_cpu.py).

So during a burst, committing the stock (and the fan-out, which follows the commit) waits in
the server's backlog and the answers get the CPU; once the answers are out, the backlog
drains at full speed. Whatever the load, a task never waits much longer than
`max_wait_seconds`: once the oldest one in the backlog (the server's task queue statistics)
has waited that long, the slots open until it is taken (docs/performance.md).
"""

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any

from temporalio import activity
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import (
    ActivityInboundInterceptor,
    CustomSlotSupplier,
    ExecuteActivityInput,
    FixedSizeSlotSupplier,
    Interceptor,
    PollerBehaviorSimpleMaximum,
    SlotMarkUsedContext,
    SlotPermit,
    SlotReleaseContext,
    SlotReserveContext,
    Worker,
    WorkerTuner,
)

from models.events import after_answer_queue
from worker.container_cpu import container_cpu_share
from worker.settings import Settings

# One CPU reading per this long; a waiting reservation looks again as often.
CPU_SAMPLE_SECONDS = 0.1
# Held while any reading of this long reached the target: over a burst, single readings dip
# under it (the dev server's SQLite writes one transaction at a time), and a mean over the
# window let commits through before it caught up (docs/performance.md).
CPU_WINDOW_SECONDS = 1.0
# How often the backlog's age is asked of the server while the slots are held. (The server
# refreshes its task queue statistics every few seconds.)
BACKLOG_READ_SECONDS = 1.0
MAXIMUM_SLOTS = 100  # the SDK's default for activities
# Customers are waiting while a step ran this recently: between two steps of a checkout its
# workflow task runs, which under load takes a few hundred milliseconds.
ANSWER_GAP_SECONDS = 0.5

# Seconds the oldest task in the backlog has waited; None when the server does not say.
BacklogAge = Callable[[], Awaitable[float | None]]

log = logging.getLogger(__name__)


def server_backlog_age(client: Client, task_queue: str) -> BacklogAge:
    """The age of the oldest activity task waiting on `task_queue`, from the server's task
    queue statistics; None where the server has none (the time-skipping test server) or
    refuses them to this worker."""
    request = DescribeTaskQueueRequest(
        namespace=client.namespace,
        task_queue=TaskQueue(name=task_queue),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
        report_stats=True,
    )
    refused = False

    async def backlog_age() -> float | None:
        nonlocal refused
        if refused:
            return None
        try:
            response = await client.workflow_service.describe_task_queue(request)
        except RPCError as err:  # the gate keeps working whatever the server answers
            # Not asked again where the server lacks the call or refuses this worker's role.
            refused = err.status in (RPCStatusCode.UNIMPLEMENTED, RPCStatusCode.PERMISSION_DENIED)
            log.warning("backlog age of %s not read: %s", task_queue, err)
            return None
        return response.stats.approximate_backlog_age.ToTimedelta().total_seconds()

    return backlog_age


class AnswersInFlight:
    """Whether customers are waiting: steps that decide an answer running in this process."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.running = 0
        self._last_finished = float("-inf")

    def started(self) -> None:
        self.running += 1

    def finished(self) -> None:
        self.running -= 1
        self._last_finished = self._clock()

    def waiting(self, now: float) -> bool:
        return self.running > 0 or now - self._last_finished < ANSWER_GAP_SECONDS

    def interceptor(self, step_activities: Collection[str] | None = None) -> Interceptor:
        """Counts the activities (local ones too) named in `step_activities`, all when None."""
        return _CountSteps(self, step_activities)


class _CountSteps(Interceptor):
    def __init__(self, answers: AnswersInFlight, names: Collection[str] | None) -> None:
        self._answers = answers
        self._names = names

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _CountingInbound(next, self._answers, self._names)


class _CountingInbound(ActivityInboundInterceptor):
    def __init__(
        self,
        next: ActivityInboundInterceptor,
        answers: AnswersInFlight,
        names: Collection[str] | None,
    ) -> None:
        super().__init__(next)
        self._answers = answers
        self._names = names

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        if self._names is not None and activity.info().activity_type not in self._names:
            return await super().execute_activity(input)
        self._answers.started()
        try:
            return await super().execute_activity(input)
        finally:
            self._answers.finished()


class CpuGatedSlots(CustomSlotSupplier):
    def __init__(
        self,
        target_cpu: float,
        max_wait_seconds: float,
        maximum_slots: int = MAXIMUM_SLOTS,
        read_cpu: Callable[[], float] | None = None,
        clock: Callable[[], float] = time.monotonic,
        backlog_age: BacklogAge | None = None,
        answers: AnswersInFlight | None = None,
    ) -> None:
        """`answers`: hold only while customers are waiting (None: whenever the CPU is busy);
        `read_cpu`: the share of the cores busy since its previous call (None: this
        container's, worker/container_cpu.py)."""
        self.target_cpu = target_cpu
        self.answers = answers
        self.max_wait_seconds = max_wait_seconds
        self.maximum_slots = maximum_slots
        self.backlog_age = backlog_age
        self._read_cpu = read_cpu or container_cpu_share()
        self._clock = clock
        self._read_cpu()  # the first reading only sets the mark
        self._readings: deque[tuple[float, float]] = deque()  # (when, share)
        self._read_at = float("-inf")
        self._oldest_wait: float | None = None  # from the server: None, not known
        self._oldest_wait_read_at = float("-inf")
        self._last_grant = clock()
        self.in_use = 0
        self.granted_busy = 0  # granted to a task that had waited max_wait, the CPU busy

    async def reserve_slot(self, ctx: SlotReserveContext) -> SlotPermit:
        # The CPU reading is what changes: there is no event to wait on.
        while True:
            if self.holding(self._clock()):
                await self._read_backlog_age()
            if (permit := self.try_grant()) is not None:
                return permit
            await asyncio.sleep(CPU_SAMPLE_SECONDS)

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
        if self.holding(now):
            if self.oldest_wait(now) < self.max_wait_seconds:
                return None
            self.granted_busy += 1
        else:
            # The backlog drains now; its age is asked again when the slots are next held.
            self._oldest_wait, self._oldest_wait_read_at = None, float("-inf")
        self.in_use += 1
        self._last_grant = now
        return SlotPermit()

    def holding(self, now: float) -> bool:
        """Whether customers are waiting and the CPU is busy."""
        busy = self.cpu_busy(now)  # read even while no one waits: the window stays current
        return busy and (self.answers is None or self.answers.waiting(now))

    def cpu_busy(self, now: float) -> bool:
        """Whether any reading of the last CPU_WINDOW_SECONDS reached the target (one new
        reading per CPU_SAMPLE_SECONDS, whoever asks)."""
        if now - self._read_at >= CPU_SAMPLE_SECONDS:
            self._readings.append((now, self._read_cpu()))
            self._read_at = now
        while self._readings and now - self._readings[0][0] > CPU_WINDOW_SECONDS:
            self._readings.popleft()
        return any(share >= self.target_cpu for _, share in self._readings)

    def oldest_wait(self, now: float) -> float:
        """How long the oldest task in the backlog has waited: the server's figure, or where
        it has none, the time since the last grant."""
        if self._oldest_wait is not None:
            return self._oldest_wait
        return now - self._last_grant

    async def _read_backlog_age(self) -> None:
        now = self._clock()
        if self.backlog_age is None or now - self._oldest_wait_read_at < BACKLOG_READ_SECONDS:
            return
        self._oldest_wait_read_at = now
        self._oldest_wait = await self.backlog_age()


AfterAnswerSlots = CpuGatedSlots | FixedSizeSlotSupplier


def after_answer_slots(
    settings: Settings, answers: AnswersInFlight | None = None
) -> AfterAnswerSlots:
    """Activity slots gated by the CPU (and `answers`), from the settings; a target of 1
    turns the gate off."""
    if settings.after_answer_target_cpu >= 1:
        return FixedSizeSlotSupplier(MAXIMUM_SLOTS)
    return CpuGatedSlots(
        settings.after_answer_target_cpu, settings.after_answer_max_wait_seconds, answers=answers
    )


def after_answer_worker(
    client: Client,
    task_queue: str,
    activities: Sequence[Callable[..., Any]],
    slots: AfterAnswerSlots,
) -> Worker:
    """The worker of `after_answer_queue(task_queue)`: what runs after an answer (the commit).
    Gated slots learn the age of the queue's backlog from the server, unless given a reader."""
    queue = after_answer_queue(task_queue)
    if isinstance(slots, CpuGatedSlots) and slots.backlog_age is None:
        slots.backlog_age = server_backlog_age(client, queue)
    return Worker(
        client,
        task_queue=queue,
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
