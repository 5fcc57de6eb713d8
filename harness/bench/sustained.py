"""`python -m harness.bench --sustained`: the rate a shop sustains, and what one checkout costs.

It starts its own dev server (headless, its Prometheus metrics on a port of its own), every
service, the checkout worker(s), the bench worker (harness/bench/worker.py: the no-op twin)
and, for the DBOS peer, its own Postgres (harness/bench/postgres.py) and the DBOS app
(harness/bench/dbos_app.py); it stops them all after. The modes:

- `checkout`: the real checkout (workflows/checkout.py), answered by update-with-start;
- `twin`: its no-op twin (harness/bench/twin.py), the same Temporal shape without the services;
- `dbos`: the same checkout on DBOS (harness/bench/dbos_checkout.py), over HTTP.

For each rate of the ladder, each mode in turn (the order rotated from one rate to the next,
so a host whose speed drifts moves them alike) holds the rate for the hold: open-loop arrivals
(harness/bench/openloop.py), each latency counted from the arrival's due time. Then the step waits
until every answer is in and all the work after the answers is done (the mode's short-lived
workflows closed, its long-lived consumers idle).

A step reports the offered and the achieved rate; the answer's p50/p95/p99; how late the
generator started a call (its worst); the age of the backlog of work after the answers (its
worst over the step, and at the end of the arrivals); the checkouts closed per second over
the second half of the hold; the drain (from the end of the arrivals to all done); the CPU of
each role, in cores and in CPU-s per checkout; for Temporal, the server's action counter per
checkout.

**Capacity**: the highest rate held for the hold (a minute by default) with the answer's p99 at
most 1 s, no errors, and all work done within 30 s after the arrivals stopped. A mode's ladder
stops after two rates in a row not held (one stall of a shared host fails a rate; the
next may hold). A mode that held every rate given goes on, by the last step between the rates,
until it fails one: its capacity is then known. `keep_going` runs every rate given, and those
only (modes compared at fixed rates).

**Cost per checkout** (harness/bench/cost.py): history events, workflow tasks and Temporal Cloud
actions, counted from the histories of the lowest rate's checkouts and their jobs and from the
consumers' events over that step, beside the server's action counter over the same step; and
the CPU-s per role per checkout at the mode's capacity (else at its lowest rate).
"""

import asyncio
import contextlib
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import httpx
import psutil
import typer
from rich.console import Console
from rich.table import Table
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError, RPCStatusCode

from harness.bench.calls import Call, meets, percentiles_ms, ratio, saga_call, visibility_time
from harness.bench.cost import (
    CheckoutCost,
    HistoryCost,
    actions_delta,
    events_between,
    per_checkout,
    server_actions,
    total_cost,
)
from harness.bench.cpu import cpu_seconds
from harness.bench.openloop import OpenLoop
from harness.bench.parts import BENCH_WORKER_MODULE, CHECKOUT_WORKER_MODULE, bench_stack
from harness.bench.postgres import BENCH_SETTINGS, DBOS_DATABASE, Postgres, running_postgres
from harness.bench.shop import bench_customer_id, bench_customer_ids, stock_bench_sku
from harness.bench.twin import (
    TWIN_ANALYTICS,
    TWIN_LOYALTY,
    TWIN_SHORT_LIVED,
    TWIN_TASK_QUEUE,
    TWIN_WORKFLOW,
    TwinOrder,
    TwinWorkflow,
    twin_analytics_ids,
    twin_job_ids,
    twin_loyalty_id,
    twin_workflow_id,
)
from models.checkout import checkout_workflow_id
from models.events import ORDER_CONFIRMED, event_id
from models.fanout import (
    ANALYTICS_WORKFLOW_TYPE,
    CUSTOMER_LOYALTY_WORKFLOW_TYPE,
    RECEIPT_CONSUMER,
    SEND_RECEIPT_WORKFLOW_TYPE,
    SHIP_ORDER_WORKFLOW_TYPE,
    SHIPPING_CONSUMER,
    analytics_workflow_ids,
    loyalty_workflow_id,
)
from models.payments import CARD_OK
from stack.launcher import (
    SERVICES,
    LaunchError,
    Stack,
    free_port,
    start_http_process,
)
from starter.payment_methods import tokenize_card
from worker.clients import connect_temporal
from worker.settings import Settings
from workflows.checkout import CHECKOUT
from workflows.fanout import job_id

MODES = ("checkout", "twin", "dbos")
# A ladder for 2 cores: from well under the modes' capacities to past the highest of them
# (docs/performance.md, "Sustained load").
DEFAULT_RATES = (2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 14.0, 16.0)
DEFAULT_HOLD_SECONDS = 60.0
CAPACITY_HOLD_SECONDS = 60.0
# The capacity rule.
P99_LIMIT_MS = 1000.0
DRAIN_LIMIT_SECONDS = 30.0
# A step waits this long after its arrivals for its answers and its work, then gives up on
# them (the step is not held either way past DRAIN_LIMIT_SECONDS; this lets the backlog clear
# before the next step).
SETTLE_LIMIT_SECONDS = 120.0
# A mode's ladder stops after this many rates in a row not held (unless keep_going).
MISSES_IN_A_ROW = 2
# Past the rates given, the ladder goes on (by the last step between them) for the modes that
# held every rate, until each has failed one, so that every capacity is known; bounded.
MORE_RATES_AT_MOST = 12


def ladder(rates: Sequence[float]) -> Iterator[float]:
    """The rates given, then more by the last step between them (at most MORE_RATES_AT_MOST)."""
    yield from rates
    step = rates[-1] - rates[-2] if len(rates) > 1 else rates[-1]
    for n in range(1, MORE_RATES_AT_MOST + 1):
        yield rates[-1] + n * max(step, 1.0)


# The slowest answers of a step, kept to tell a stall from a rate too high.
SLOWEST = 5
ROLES = ("server", "worker", "services", "generator")
SAMPLE_SECONDS = 1.0
DRAIN_POLL_SECONDS = 0.5
# The dev server reports its metrics about every second; up to this many more reads.
ACTION_REPORT_SECONDS = 1.2
ACTION_SETTLE_READS = 5
STEP_PAUSE_SECONDS = 2.0
WARM_UP = 5
WARM_UP_LIMIT_SECONDS = 60.0
# The histories read for the cost: the lowest rate's checkouts, up to this many.
COST_SAMPLE_LIMIT = 200
CONSUMER_RUNS_LIMIT = 1000
HISTORY_FETCHES_AT_ONCE = 16
CHECKOUT_SHORT_LIVED = (
    CHECKOUT,
    SEND_RECEIPT_WORKFLOW_TYPE,
    SHIP_ORDER_WORKFLOW_TYPE,
)
# The targets, reported and never asserted: (ratio, ">=" or "<=", bound).
TARGETS = (
    ("checkout_vs_twin_capacity", ">=", 0.8),
    ("checkout_vs_dbos_p50", "<=", 1.0),
    ("checkout_vs_dbos_capacity", ">=", 0.5),
)


@dataclass
class SustainedConfig:
    rates: list[float] = field(default_factory=lambda: list(DEFAULT_RATES))
    hold_seconds: float = DEFAULT_HOLD_SECONDS
    modes: list[str] = field(default_factory=lambda: list(MODES))
    keep_going: bool = False
    workers: int = 1
    sqlite_pragmas: list[str] = field(default_factory=list)
    worker_env: dict[str, str] = field(default_factory=dict)
    p99_limit_ms: float = P99_LIMIT_MS
    drain_limit_seconds: float = DRAIN_LIMIT_SECONDS
    settle_limit_seconds: float = SETTLE_LIMIT_SECONDS
    cpu_count: int | None = field(default_factory=os.cpu_count)
    postgres_settings: dict[str, str] = field(default_factory=lambda: dict(BENCH_SETTINGS))


@dataclass
class StepFigures:
    mode: str
    rate: float
    checkouts: int
    answered: int
    errors: int
    first_errors: list[str]
    offered_per_second: float
    # Answers per second, from the first answer to the last.
    achieved_per_second: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    generator_late_max_ms: float
    # The slowest answers: [seconds from the step's start to the arrival, latency ms].
    slowest: list[list[float]]
    # The age of the work after the answers waiting: the oldest activity task of the mode's
    # task queue (the server's task queue statistics), DBOS's oldest unfinished consumer
    # workflow.
    backlog_age_max_s: float | None
    backlog_age_end_s: float | None
    closed_per_second: float | None
    # From the end of the arrivals until every answer is in and every job is done; None: not
    # within the settle limit.
    drain_seconds: float | None
    seconds: float
    cpu_cores: dict[str, float]
    cpu_s_per_checkout: dict[str, float]
    server_actions_per_checkout: float | None
    server_actions_by_type: dict[str, float]
    held: bool


@dataclass
class CostFigures:
    rate: float  # the step whose histories were counted
    history: CheckoutCost | None  # None: not Temporal
    server_actions_per_checkout: float | None
    server_actions_by_type: dict[str, float]
    cpu_rate: float  # the step the CPU figures come from
    cpu_s_per_checkout: dict[str, float]


@dataclass
class ModeReport:
    mode: str
    steps: list[StepFigures] = field(default_factory=list)
    capacity_per_second: float | None = None
    # The highest rate run was held: the capacity may be higher than the ladder reaches.
    capped: bool = False
    cost: CostFigures | None = None


@dataclass
class SustainedReport:
    config: SustainedConfig
    modes: dict[str, ModeReport]
    skipped: dict[str, str] = field(default_factory=dict)

    def ratios(self) -> dict[str, float | None]:
        checkout = self.modes.get("checkout")
        twin, dbos = self.modes.get("twin"), self.modes.get("dbos")
        ratios: dict[str, float | None] = {}
        if checkout and twin:
            ratios["checkout_vs_twin_capacity"] = ratio(
                checkout.capacity_per_second, twin.capacity_per_second
            )
            ratios["checkout_vs_twin_actions"] = ratio(_actions(checkout), _actions(twin))
            ratios["checkout_vs_twin_cpu"] = ratio(_cpu_total(checkout), _cpu_total(twin))
        if checkout and dbos:
            ratios["checkout_vs_dbos_p50"] = p50_ratio(checkout.steps, dbos.steps)
            ratios["checkout_vs_dbos_capacity"] = ratio(
                checkout.capacity_per_second, dbos.capacity_per_second
            )
            ratios["checkout_vs_dbos_cpu"] = ratio(_cpu_total(checkout), _cpu_total(dbos))
        return ratios

    def targets_met(self) -> dict[str, bool | None]:
        ratios = self.ratios()
        return {
            name: None if ratios.get(name) is None else meets(ratios[name], op, bound)  # type: ignore[arg-type]
            for name, op, bound in TARGETS
            if name in ratios
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "config": asdict(self.config),
            **{name: asdict(mode) for name, mode in self.modes.items()},
            "skipped": self.skipped,
            "capacity_rule": {
                "p99_ms_at_most": self.config.p99_limit_ms,
                "drain_seconds_at_most": self.config.drain_limit_seconds,
                "hold_seconds": self.config.hold_seconds,
                # Capacity as defined: each rate held for a minute.
                "as_defined": self.config.hold_seconds >= CAPACITY_HOLD_SECONDS,
            },
            "ratios": self.ratios(),
            "targets": {name: f"{op} {bound}" for name, op, bound in TARGETS},
            "targets_met": self.targets_met(),
        }

    def as_json(self) -> str:
        return json.dumps(self.as_dict())


def _actions(mode: ModeReport) -> float | None:
    history = mode.cost.history if mode.cost else None
    return history.actions if history else None


def _cpu_total(mode: ModeReport) -> float | None:
    return mode.cost.cpu_s_per_checkout.get("total") if mode.cost else None


def held(step: StepFigures, p99_limit_ms: float, drain_limit_seconds: float) -> bool:
    """The capacity rule for one step (its hold is the run's)."""
    return (
        step.errors == 0
        and step.answered == step.checkouts
        and step.p99_ms <= p99_limit_ms
        and step.drain_seconds is not None
        and step.drain_seconds <= drain_limit_seconds
    )


def capacity(steps: Sequence[StepFigures]) -> tuple[float | None, bool]:
    """The highest rate held, and whether it is the highest rate run (the capacity may then be
    higher than the ladder reached)."""
    held_rates = [step.rate for step in steps if step.held]
    if not held_rates:
        return None, False
    return max(held_rates), max(held_rates) >= max(step.rate for step in steps)


def cost_steps(
    steps: Sequence[StepFigures], capacity_per_second: float | None
) -> tuple[StepFigures, StepFigures]:
    """The step the histories are counted from (the lowest rate: the cost of a checkout
    unhurried), and the step the CPU per checkout comes from (the capacity's, else the
    lowest)."""
    lowest = min(steps, key=lambda step: step.rate)
    by_rate = {step.rate: step for step in steps}
    return lowest, by_rate.get(capacity_per_second or lowest.rate, lowest)


def p50_ratio(a: Sequence[StepFigures], b: Sequence[StepFigures]) -> float | None:
    """The median over the rates both held of a's answer p50 over b's."""
    b_held = {step.rate: step for step in b if step.held}
    ratios = [
        step.p50_ms / b_held[step.rate].p50_ms
        for step in a
        if step.held and step.rate in b_held and b_held[step.rate].p50_ms > 0
    ]
    return round(statistics.median(ratios), 3) if ratios else None


# -- the modes ---------------------------------------------------------------------------------

# Seconds the oldest task in a backlog has waited; None when the server does not say.
BacklogAge = Callable[[], Awaitable[float | None]]


def server_backlog_age(client: Client, task_queue: str) -> BacklogAge:
    """The age of the oldest activity task waiting on `task_queue`, from the server's task
    queue statistics; None where the server refuses them (after the first refusal, not asked
    again)."""
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
        except RPCError as err:
            refused = err.status in (RPCStatusCode.UNIMPLEMENTED, RPCStatusCode.PERMISSION_DENIED)
            return None
        return response.stats.approximate_backlog_age.ToTimedelta().total_seconds()

    return backlog_age


class Driver(Protocol):
    name: str
    # The meter's parts that are this mode's server and its workers.
    server_part: str
    worker_parts: frozenset[str]

    async def call(self, order_id: str) -> bool: ...

    async def in_flight(self) -> bool:
        """Whether any work after the answers is not done yet."""
        ...

    async def closed_since(self, since: datetime) -> int:
        """Checkouts started since `since` that have ended (their work after the answer
        done, the fan-out started)."""
        ...

    async def backlog_age(self) -> float | None: ...


@dataclass
class TemporalDriver:
    name: str
    client: Client
    place: Call
    checkout_type: str
    short_lived: tuple[str, ...]
    consumer_types: tuple[str, ...]
    consumer_ids: list[str]
    backlog: BacklogAge
    history_ids: Callable[[str], list[str]]  # an order's workflow ids: checkout, its jobs
    worker_parts: frozenset[str]
    server_part: str = "temporal"

    async def call(self, order_id: str) -> bool:
        return await self.place(order_id)

    async def in_flight(self) -> bool:
        types = ", ".join(f"'{name}'" for name in self.short_lived)
        running = f"ExecutionStatus = 'Running' AND WorkflowType IN ({types})"
        if (await self.client.count_workflows(running)).count:
            return True
        # A long-lived consumer with a workflow task scheduled or running has signals to
        # handle still (a signal schedules one; its local activity runs within it).
        pending = await asyncio.gather(*(self._task_pending(i) for i in self.consumer_ids))
        return any(pending)

    async def _task_pending(self, workflow_id: str) -> bool:
        try:
            description = await self.client.get_workflow_handle(workflow_id).describe()
        except RPCError as err:
            if err.status is RPCStatusCode.NOT_FOUND:
                return False  # not signalled yet
            raise
        return description.raw_description.HasField("pending_workflow_task")

    async def closed_since(self, since: datetime) -> int:
        query = (
            f"WorkflowType = '{self.checkout_type}' AND ExecutionStatus != 'Running' "
            f"AND StartTime >= '{visibility_time(since)}'"
        )
        return (await self.client.count_workflows(query)).count

    async def backlog_age(self) -> float | None:
        return await self.backlog()


@dataclass
class DbosDriver:
    """The DBOS app over HTTP (harness/bench/dbos_app.py)."""

    http: aiohttp.ClientSession
    url: str
    payment_token: str
    name: str = "dbos"
    server_part: str = "postgres"
    worker_parts: frozenset[str] = frozenset({"dbos-app"})

    async def call(self, order_id: str) -> bool:
        body = {"order_id": order_id, "payment_token": self.payment_token}
        async with self.http.post(f"{self.url}/checkout", json=body) as response:
            answer = await response.json()
            if response.status != 200:
                raise RuntimeError(f"DBOS app {response.status}: {answer.get('error')}")
        return bool(answer["status"] == "CONFIRMED")

    async def _get(self, path: str, **params: str) -> Any:
        async with self.http.get(f"{self.url}{path}", params=params) as response:
            response.raise_for_status()
            return await response.json()

    async def in_flight(self) -> bool:
        return bool((await self._get("/in-flight"))["in_flight"])

    async def closed_since(self, since: datetime) -> int:
        moment = since.astimezone(UTC).isoformat()
        return int((await self._get("/closed", since=moment))["closed"])

    async def backlog_age(self) -> float | None:
        return float((await self._get("/backlog"))["age_seconds"])


def checkout_driver(client: Client, payment_token: str, workers: frozenset[str]) -> TemporalDriver:
    task_queue = Settings().task_queue

    def history_ids(order_id: str) -> list[str]:
        workflow_id = checkout_workflow_id(order_id)
        event = event_id(workflow_id, ORDER_CONFIRMED)
        return [workflow_id, job_id(event, RECEIPT_CONSUMER), job_id(event, SHIPPING_CONSUMER)]

    return TemporalDriver(
        name="checkout",
        client=client,
        place=saga_call(client, task_queue, payment_token),
        checkout_type=CHECKOUT,
        short_lived=CHECKOUT_SHORT_LIVED,
        consumer_types=(CUSTOMER_LOYALTY_WORKFLOW_TYPE, ANALYTICS_WORKFLOW_TYPE),
        consumer_ids=[loyalty_workflow_id(c) for c in bench_customer_ids()]
        + analytics_workflow_ids(),
        backlog=server_backlog_age(client, task_queue),
        history_ids=history_ids,
        worker_parts=workers,
    )


def twin_call(client: Client) -> Call:
    async def call(order_id: str) -> bool:
        start = WithStartWorkflowOperation(
            TwinWorkflow.run,
            TwinOrder(order_id, bench_customer_id(order_id)),
            id=twin_workflow_id(order_id),
            task_queue=TWIN_TASK_QUEUE,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )
        answer = await client.execute_update_with_start_workflow(
            TwinWorkflow.decision, start_workflow_operation=start
        )
        return answer == "CONFIRMED"

    return call


def twin_driver(client: Client, workers: frozenset[str]) -> TemporalDriver:
    return TemporalDriver(
        name="twin",
        client=client,
        place=twin_call(client),
        checkout_type=TWIN_WORKFLOW,
        short_lived=TWIN_SHORT_LIVED,
        consumer_types=(TWIN_LOYALTY, TWIN_ANALYTICS),
        consumer_ids=[twin_loyalty_id(c) for c in bench_customer_ids()] + twin_analytics_ids(),
        backlog=server_backlog_age(client, TWIN_TASK_QUEUE),
        history_ids=lambda order_id: [twin_workflow_id(order_id), *twin_job_ids(order_id)],
        worker_parts=workers,
    )


# -- what it measures with -----------------------------------------------------------------------


class PartsMeter:
    """CPU seconds (user + system) so far of each part by name, Postgres's processes summed,
    and this process's own as `generator`. Read only at the ends of a step: psutil's scan of
    Postgres's children costs this process more than its readings."""

    def __init__(self, stack: Stack, postgres: Postgres | None, extra: dict[str, int]) -> None:
        self._parts = {proc.name: psutil.Process(proc.process.pid) for proc in stack.processes}
        self._parts.update({name: psutil.Process(pid) for name, pid in extra.items()})
        self._postgres = postgres

    def read(self) -> dict[str, float]:
        figures = {name: cpu_seconds(process) for name, process in self._parts.items()}
        figures["generator"] = cpu_seconds(psutil.Process(), children=False)
        if self._postgres is not None:
            figures["postgres"] = sum(cpu_seconds(p) for p in self._postgres.processes())
        return figures

    @staticmethod
    def by_role(figures: dict[str, float], driver: Driver) -> dict[str, float]:
        roles = dict.fromkeys((*ROLES, "other"), 0.0)
        for part, seconds in figures.items():
            if part == "generator":
                role = "generator"
            elif part == driver.server_part:
                role = "server"
            elif part in SERVICES:
                role = "services"
            elif part in driver.worker_parts:
                role = "worker"
            else:
                role = "other"  # the other modes' parts, idle meanwhile
            roles[role] += seconds
        return roles


class ActionMeter:
    """The dev server's `action` counter (harness/bench/cost.py), read from its metrics endpoint."""

    def __init__(self, url: str) -> None:
        self.url = url

    async def read(self) -> dict[str, float]:
        async with httpx.AsyncClient(timeout=10.0) as http:
            response = await http.get(self.url)
            response.raise_for_status()
            return server_actions(response.text)

    async def read_settled(self) -> dict[str, float]:
        """Once two reads a reporting interval apart agree: the server reports its counters
        to the endpoint periodically, so the last actions of a step may not be in it yet."""
        last = await self.read()
        for _ in range(ACTION_SETTLE_READS):
            await asyncio.sleep(ACTION_REPORT_SECONDS)
            current = await self.read()
            if current == last:
                break
            last = current
        return last


@dataclass
class StepWindow:
    """When a step ran (Unix seconds) and what it placed: what its cost is counted over."""

    start: float
    end: float
    order_ids: list[str]


async def _sample_backlog(
    driver: Driver, ages: list[tuple[float, float]], stop: asyncio.Event, limit: int
) -> None:
    for _ in range(limit):
        if stop.is_set():
            return
        with contextlib.suppress(Exception):  # a missed reading is no reason to stop the step
            age = await driver.backlog_age()
            if age is not None:
                ages.append((time.monotonic(), age))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SAMPLE_SECONDS)


async def _closed_rate(
    driver: Driver, since: datetime, started: float, hold: float
) -> float | None:
    """Checkouts closed per second over the second half of the hold."""
    readings = []
    for at in (started + hold / 2, started + hold):
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        readings.append((time.monotonic(), await driver.closed_since(since)))
    (t1, first), (t2, second) = readings
    return round((second - first) / (t2 - t1), 2) if t2 > t1 else None


async def _drain(driver: Driver, load: OpenLoop, limit: float) -> float | None:
    """Seconds from the end of the arrivals until every answer is in and the mode says no
    work is left, twice in a row (visibility follows the workflows by moments); None when
    not so within `limit`."""
    deadline = load.end + limit
    quiet_since: float | None = None
    while time.monotonic() < deadline:
        now = time.monotonic()
        if load.pending() == 0 and not await driver.in_flight():
            if quiet_since is not None:
                return round(max(0.0, quiet_since - load.end), 2)
            quiet_since = now
        else:
            quiet_since = None
        await asyncio.sleep(DRAIN_POLL_SECONDS)
    return None


async def run_step(
    driver: Driver,
    rate: float,
    config: SustainedConfig,
    meter: PartsMeter,
    actions: ActionMeter | None,
    run_id: str,
) -> tuple[StepFigures, StepWindow]:
    count = max(2, round(rate * config.hold_seconds))
    order_ids = [f"{run_id}-{driver.name}-{rate:g}-{i}" for i in range(count)]
    load = OpenLoop(driver.call, order_ids, rate)
    # The server stamps the start times; a margin for the clock read before the first start.
    since = datetime.now(UTC) - timedelta(seconds=0.5)
    wall_start = time.time()
    cpu_before = meter.read()
    actions_before = await actions.read() if actions else {}
    started = time.monotonic()
    ages: list[tuple[float, float]] = []
    stop = asyncio.Event()
    samples = int((config.hold_seconds + config.settle_limit_seconds) / SAMPLE_SECONDS) + 2
    sampler = asyncio.ensure_future(_sample_backlog(driver, ages, stop, samples))
    closed = asyncio.ensure_future(_closed_rate(driver, since, started, config.hold_seconds))
    try:
        await load.run_arrivals()
        drain = await _drain(driver, load, config.settle_limit_seconds)
    except BaseException:
        closed.cancel()
        raise
    finally:
        stop.set()
        await load.cancel()  # the answers still out past the settle limit
        await sampler
    closed_rate = await closed
    seconds = time.monotonic() - started
    cpu_after = meter.read()
    actions_after = await actions.read_settled() if actions else {}
    wall_end = time.time()

    arrivals = load.arrivals
    latencies = [a.latency for a in arrivals if a.latency is not None]
    answers = sorted(a.answered for a in arrivals if a.ok and a.answered is not None)
    errors = [a.error for a in arrivals if a.error is not None]
    p50, p95, p99 = percentiles_ms(latencies)
    late = [a.late for a in arrivals if a.late is not None]
    before = meter.by_role(cpu_before, driver)
    after = meter.by_role(cpu_after, driver)
    used = {role: after[role] - before[role] for role in after}
    per_checkout = {role: round(used[role] / count, 4) for role in ROLES}
    per_checkout["total"] = round(sum(per_checkout.values()), 4)
    delta = actions_delta(actions_before, actions_after)
    end_ages = [age for at, age in ages if at <= load.end]
    step = StepFigures(
        mode=driver.name,
        rate=rate,
        checkouts=count,
        answered=len(answers),
        errors=len(errors),
        first_errors=errors[:3],
        offered_per_second=round(count / (load.end - load.start), 2),
        achieved_per_second=round((len(answers) - 1) / (answers[-1] - answers[0]), 2)
        if len(answers) > 1 and answers[-1] > answers[0]
        else 0.0,
        p50_ms=p50,
        p95_ms=p95,
        p99_ms=p99,
        generator_late_max_ms=round(max(late, default=0.0) * 1000, 1),
        slowest=[
            [round(a.due - load.start, 2), round(latency * 1000, 1)]
            for a, latency in sorted(
                ((a, a.latency) for a in arrivals if a.latency is not None),
                key=lambda pair: pair[1],
                reverse=True,
            )[:SLOWEST]
        ],
        backlog_age_max_s=round(max(age for _, age in ages), 2) if ages else None,
        backlog_age_end_s=round(end_ages[-1], 2) if end_ages else None,
        closed_per_second=closed_rate,
        drain_seconds=drain,
        seconds=round(seconds, 1),
        cpu_cores={role: round(value / seconds, 3) for role, value in used.items()},
        cpu_s_per_checkout=per_checkout,
        server_actions_per_checkout=round(sum(delta.values()) / count, 2) if actions else None,
        server_actions_by_type={kind: round(value / count, 3) for kind, value in delta.items()},
        held=False,
    )
    step.held = held(step, config.p99_limit_ms, config.drain_limit_seconds)
    return step, StepWindow(wall_start, wall_end, order_ids)


async def warm_up(driver: Driver, run_id: str) -> None:
    """A few checkouts: connections, caches, the services' first writes, the consumers."""
    ids = [f"{run_id}-{driver.name}-warm-{i}" for i in range(WARM_UP)]
    await asyncio.gather(*(driver.call(order_id) for order_id in ids))
    polls = int(WARM_UP_LIMIT_SECONDS / DRAIN_POLL_SECONDS)
    for _ in range(polls):  # nothing to wait on: the servers are asked
        if not await driver.in_flight():
            return
        await asyncio.sleep(DRAIN_POLL_SECONDS)


async def temporal_cost(driver: TemporalDriver, window: StepWindow) -> CheckoutCost:
    """Per checkout, from the histories: the step's checkouts and their jobs, and the
    consumers' events over the step's window."""
    client = driver.client
    fetching = asyncio.Semaphore(HISTORY_FETCHES_AT_ONCE)

    async def events(workflow_id: str, run_id: str | None = None) -> Sequence[HistoryEvent]:
        async with fetching:
            handle = client.get_workflow_handle(workflow_id, run_id=run_id)
            return (await handle.fetch_history()).events

    sample = window.order_ids[:COST_SAMPLE_LIMIT]
    ids = [workflow_id for order_id in sample for workflow_id in driver.history_ids(order_id)]
    own = total_cost(await asyncio.gather(*(events(workflow_id) for workflow_id in ids)))
    # The consumers' runs that overlap the window: started before its end, open after its start.
    start = visibility_time(datetime.fromtimestamp(window.start, UTC))
    end = visibility_time(datetime.fromtimestamp(window.end, UTC))
    consumers: dict[str, HistoryCost] = {}
    for workflow_type in driver.consumer_types:
        query = (
            f"WorkflowType = '{workflow_type}' AND StartTime <= '{end}' "
            f"AND (ExecutionStatus = 'Running' OR CloseTime >= '{start}')"
        )
        runs = [run async for run in client.list_workflows(query, limit=CONSUMER_RUNS_LIMIT)]
        histories = await asyncio.gather(*(events(run.id, run.run_id) for run in runs))
        consumers[workflow_type] = total_cost(
            events_between(history, window.start, window.end) for history in histories
        )
    return per_checkout(len(sample), own, consumers)


def _rotated(names: Sequence[str], by: int) -> list[str]:
    shift = by % len(names) if names else 0
    return [*names[shift:], *names[:shift]]


@dataclass
class SustainedParts:
    stack: Stack
    metrics_url: str
    postgres: Postgres | None = None
    dbos_url: str | None = None
    # Processes beside the stack's, by part name (the DBOS app).
    extra: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


async def run_sustained(
    parts: SustainedParts,
    config: SustainedConfig,
    progress: Callable[[str], None] = lambda _: None,
) -> SustainedReport:
    stack = parts.stack
    env = {**os.environ, **stack.env}
    await stock_bench_sku(stack.service_urls, stack.service_headers)
    card = await tokenize_card(stack.service_urls["payments"], stack.publishable_key, CARD_OK)
    client = await connect_temporal(env)
    meter = PartsMeter(stack, parts.postgres, parts.extra)
    actions = ActionMeter(parts.metrics_url)
    run_id = uuid.uuid4().hex[:8]
    workers = {proc.name for proc in stack.processes}
    checkout_workers = frozenset(n for n in workers if n.startswith(CHECKOUT_WORKER_MODULE))
    twin_workers = frozenset(n for n in workers if n.startswith(BENCH_WORKER_MODULE))
    # Generous: an open loop at a rate the mode cannot keep has many calls out at once.
    connector = aiohttp.TCPConnector(limit=2000)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=None)
    ) as http:
        drivers: dict[str, Driver] = {}
        for mode in config.modes:
            if mode == "checkout":
                drivers[mode] = checkout_driver(client, card.token, checkout_workers)
            elif mode == "twin":
                drivers[mode] = twin_driver(client, twin_workers)
            elif mode == "dbos" and parts.dbos_url is not None:
                drivers[mode] = DbosDriver(http, parts.dbos_url, card.token)
        reports = {mode: ModeReport(mode) for mode in drivers}
        windows: dict[tuple[str, float], StepWindow] = {}
        for mode, driver in drivers.items():
            progress(f"{mode}: warming up")
            await warm_up(driver, run_id)
        misses = dict.fromkeys(drivers, 0)
        failed: set[str] = set()  # modes that did not hold a rate
        rates = config.rates if config.keep_going else ladder(config.rates)
        for index, rate in enumerate(rates):
            beyond = index >= len(config.rates)
            if beyond and failed >= set(drivers):
                break  # every mode has failed a rate: every capacity is known
            for mode in _rotated(list(drivers), index):
                if misses[mode] >= MISSES_IN_A_ROW and not config.keep_going:
                    continue
                if beyond and mode in failed:
                    continue
                progress(f"{mode}: {rate:g}/s for {config.hold_seconds:g} s")
                await asyncio.sleep(STEP_PAUSE_SECONDS)
                driver = drivers[mode]
                step, window = await run_step(
                    driver, rate, config, meter, actions if mode != "dbos" else None, run_id
                )
                reports[mode].steps.append(step)
                windows[(mode, rate)] = window
                slowest = ", ".join(f"{ms:.0f} ms at {at:g} s" for at, ms in step.slowest[:3])
                progress(
                    f"  p50 {step.p50_ms:.0f} ms, p99 {step.p99_ms:.0f} ms, slowest {slowest}, "
                    f"drain {step.drain_seconds if step.drain_seconds is not None else '-'} s, "
                    f"errors {step.errors}: {'held' if step.held else 'not held'}"
                )
                misses[mode] = 0 if step.held else misses[mode] + 1
                if not step.held:
                    failed.add(mode)
        for mode, report in reports.items():
            report.capacity_per_second, report.capped = capacity(report.steps)
            if not report.steps:
                continue
            lowest, cpu_step = cost_steps(report.steps, report.capacity_per_second)
            history = None
            driver = drivers[mode]
            if isinstance(driver, TemporalDriver):
                progress(f"{mode}: counting the cost from the {lowest.rate:g}/s histories")
                history = await temporal_cost(driver, windows[(mode, lowest.rate)])
            report.cost = CostFigures(
                rate=lowest.rate,
                history=history,
                server_actions_per_checkout=lowest.server_actions_per_checkout,
                server_actions_by_type=lowest.server_actions_by_type,
                cpu_rate=cpu_step.rate,
                cpu_s_per_checkout=cpu_step.cpu_s_per_checkout,
            )
    return SustainedReport(config, reports, dict(parts.skipped))


@contextlib.contextmanager
def sustained_parts(data_dir: Path, config: SustainedConfig) -> Iterator[SustainedParts]:
    """The headless dev server with its metrics on a known port, every service, the
    checkout worker(s) and the bench worker; for `dbos`, Postgres and the DBOS app."""
    metrics_port = free_port()
    with (
        bench_stack(
            data_dir,
            config.workers,
            config.sqlite_pragmas,
            config.worker_env,
            temporal_args=["--metrics-port", str(metrics_port)],
        ) as stack,
        contextlib.ExitStack() as later,
    ):
        env = {**stack.env, **config.worker_env}
        parts = SustainedParts(stack, f"http://127.0.0.1:{metrics_port}/metrics")
        if "dbos" in config.modes:
            try:
                parts.postgres = later.enter_context(
                    running_postgres(
                        log_path=data_dir / "postgres.log", settings=config.postgres_settings
                    )
                )
            except LaunchError as err:
                parts.skipped["dbos"] = str(err)
            else:
                port = free_port()
                app = start_http_process(
                    "dbos-app",
                    [
                        sys.executable,
                        "-m",
                        "harness.bench.dbos_app",
                        "--port",
                        str(port),
                        "--database-url",
                        parts.postgres.url_for(DBOS_DATABASE),
                    ],
                    data_dir,
                    f"http://127.0.0.1:{port}",
                    env,
                )
                # Stopped before Postgres (the ExitStack's), its connections closed first.
                later.callback(app.stop)
                parts.dbos_url = app.address
                parts.extra["dbos-app"] = app.process.pid
        yield parts


# -- what it prints ----------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def steps_table(report: SustainedReport) -> Table:
    config = report.config
    table = Table(
        title=(
            f"sustained: each rate held {config.hold_seconds:g} s, open-loop arrivals, "
            f"{config.workers} checkout worker(s), {config.cpu_count} CPUs"
        )
    )
    columns = (
        "mode",
        "rate /s",
        "achieved /s",
        "p50 ms",
        "p95",
        "p99",
        "late max ms",
        "backlog max s",
        "at end",
        "closed /s",
        "drain s",
        "cores server",
        "worker",
        "services",
        "generator",
        "other",
        "CPU s/checkout",
        "actions/checkout",
        "errors",
        "held",
    )
    for column in columns:
        table.add_column(column, justify="left" if column == "mode" else "right")
    for mode in report.modes.values():
        for step in mode.steps:
            cores = step.cpu_cores
            table.add_row(
                mode.mode,
                f"{step.rate:g}",
                f"{step.achieved_per_second:.1f}",
                f"{step.p50_ms:.0f}",
                f"{step.p95_ms:.0f}",
                f"{step.p99_ms:.0f}",
                f"{step.generator_late_max_ms:.0f}",
                _fmt(step.backlog_age_max_s),
                _fmt(step.backlog_age_end_s),
                _fmt(step.closed_per_second),
                _fmt(step.drain_seconds),
                *(f"{cores[role]:.2f}" for role in (*ROLES, "other")),
                f"{step.cpu_s_per_checkout['total']:.3f}",
                _fmt(step.server_actions_per_checkout),
                str(step.errors),
                "yes" if step.held else "no",
            )
    return table


def summary_table(report: SustainedReport) -> Table:
    table = Table(title="capacity and cost per checkout")
    columns = (
        "mode",
        "capacity /s",
        "events",
        "workflow tasks",
        "actions (histories)",
        "actions (server)",
        "at /s",
        "CPU s server",
        "worker",
        "services",
        "generator",
        "total",
        "at /s",
    )
    for column in columns:
        table.add_column(column, justify="left" if column == "mode" else "right")
    for mode in report.modes.values():
        cost = mode.cost
        history = cost.history if cost else None
        cpu = cost.cpu_s_per_checkout if cost else {}
        shown = _fmt(mode.capacity_per_second, 0)
        table.add_row(
            mode.mode,
            f">= {shown}" if mode.capped else shown,
            _fmt(history.events if history else None),
            _fmt(history.workflow_tasks if history else None),
            _fmt(history.actions if history else None),
            _fmt(cost.server_actions_per_checkout if cost else None),
            f"{cost.rate:g}" if cost else "-",
            *(_fmt(cpu.get(role), 4) for role in (*ROLES, "total")),
            f"{cost.cpu_rate:g}" if cost else "-",
        )
    return table


def ratios_table(report: SustainedReport) -> Table:
    table = Table(title="ratios (targets reported, not asserted)")
    for column in ("ratio", "value", "target", "met"):
        table.add_column(column)
    targets = {name: f"{op} {bound}" for name, op, bound in TARGETS}
    met = report.targets_met()
    for name, value in report.ratios().items():
        table.add_row(name, _fmt(value, 2), targets.get(name, ""), str(met.get(name, "")))
    return table


def print_report(report: SustainedReport, as_json: bool) -> None:
    if as_json:
        print(report.as_json())
        return
    console = Console(width=None if sys.stdout.isatty() else 250)
    console.print(steps_table(report))
    console.print(summary_table(report))
    console.print(ratios_table(report))
    for mode, reason in report.skipped.items():
        console.print(f"{mode} skipped: {reason}")


def sustained_command(config: SustainedConfig, data_dir: Path, as_json: bool) -> None:
    """`python -m harness.bench --sustained`: start the parts, run the ladder, stop them; print
    the report, and write its JSON to DATA_DIR/sustained.json."""
    errors = Console(stderr=True)
    errors.print(f"Data and logs: {data_dir}")
    try:
        with sustained_parts(data_dir, config) as parts:
            report = asyncio.run(run_sustained(parts, config, progress=errors.print))
    except LaunchError as err:
        errors.print(f"[red]Could not start the bench: {err}[/red]")
        raise typer.Exit(1) from err
    # The JSON beside the logs too, whatever was printed.
    (data_dir / "sustained.json").write_text(report.as_json() + "\n")
    print_report(report, as_json)
    for mode in report.modes.values():
        for step in mode.steps:
            for error in step.first_errors:
                errors.print(f"[yellow]{mode.mode} at {step.rate:g}/s: {error}[/]")
