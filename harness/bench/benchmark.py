"""`python -m harness.bench`: what the saga layer costs and what the fan-out buys, in one run.

It starts its own dev server, services and workers, then measures:

- `bare`: the checkout's shape on bare Temporal (harness/bench/bare.py: four no-op activities before
  the answer, one after, answered by update-with-start): the engine's ceiling here.
- `saga`: the real checkout (its steps local first) with the real
  services and the fan-out.
- `direct`: the same checkout as a chain of synchronous HTTP calls (harness/bench/direct.py).
- `bare_local`: bare with local activities; `saga_activities`: the checkout with every step an
  activity, not local first (harness/bench/checkout_activities.py, on the bench's checkout workers).
- `saga_slow`, `direct_slow`, `saga_activities_slow`: with email and warehouse slowed.

Each mode: the answer's p50/p95/p99 unloaded (one checkout at a time), then bursts of
concurrent checkouts: checkouts/s, the answer's p50/p95/p99 under the burst, and the CPU
seconds per checkout of each kind of process (server, workers, services, and the client:
this process, which for `direct` is the chain itself), read with psutil once the work that
follows the answer (commit, fan-out) has settled. The first five modes take turns, sample by
sample and burst round by burst round, so a host whose speed drifts moves them alike; the
throughput ratios are the median of the ratios within each round.
"""

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import httpx
import psutil
import typer
from rich.console import Console
from rich.table import Table
from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy

from harness.bench.bare import BARE_TASK_QUEUE, BareWorkflow
from harness.bench.calls import Call, meets, percentiles_ms, ratio, saga_call, visibility_time
from harness.bench.checkout_activities import CheckoutActivitiesWorkflow
from harness.bench.cpu import cpu_seconds
from harness.bench.direct import direct_checkout
from harness.bench.parts import bench_stack
from harness.bench.service_calls import ShopCalls, shop_calls
from harness.bench.shop import bench_request, stock_bench_sku
from models.payments import CARD_OK
from stack.launcher import (
    DEV_SERVER_SQLITE_PRAGMAS,
    SERVICES,
    LaunchError,
    ManagedProcess,
    Stack,
)
from starter.payment_methods import tokenize_card
from worker.clients import connect_temporal
from worker.settings import Settings

SLOWED_SERVICES = ("email", "warehouse")
ROLES = ("server", "worker", "services", "client")
# The work after the answer has settled when our processes use less than this share of a
# core over a window; give up waiting after SETTLE_LIMIT_SECONDS.
SETTLE_WINDOW_SECONDS = 1.0
SETTLE_CPU_SHARE = 0.15
SETTLE_LIMIT_SECONDS = 90.0
# Workflows that end when the work after an answer is done (the long-lived consumers don't).
IN_FLIGHT_QUERY = (
    "ExecutionStatus = 'Running' AND WorkflowType IN "
    "('Checkout', 'CheckoutActivities', 'SendReceipt', 'ShipOrder', 'BenchBare')"
)
# The workflows a burst starts, one per checkout: each closes once its work after the answer
# (the commit, and the fan-out's start) is done.
BURST_WORKFLOWS = "WorkflowType IN ('Checkout', 'CheckoutActivities', 'BenchBare')"
UNLOADED_WINDOW_SECONDS = 0.25
UNLOADED_LIMIT_SECONDS = 10.0
# Targets of issue 8 (ratios, not absolute times).
TARGET_THROUGHPUT_RATIO = 0.9
TARGET_P50_RATIO = 1.25
TARGET_SLOW_P50_RATIO = 1.1
# The modes the targets are checked for: the checkout as it ships, and with activity steps.
SAGA_MODES = ("saga", "saga_activities")


@dataclass
class ModeFigures:
    mode: str
    checkouts: int
    errors: int
    seconds: float
    per_second: float
    all_done_per_second: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    burst_p50_ms: float
    burst_p95_ms: float
    burst_p99_ms: float
    cpu_s_per_checkout: dict[str, float]
    settle_seconds: float
    first_errors: list[str]
    # Slowed modes: the p50 of fast samples taken in turn with the slowed ones (same moment,
    # same state of the server), which the slowed p50 is compared with.
    paired_fast_p50_ms: float | None = None
    # Checkouts/s of each burst round; the burst figures above are the median round's.
    per_second_rounds: list[float] = field(default_factory=list)
    # Checkouts of the median round whose work after the answer was done by the burst's last
    # answer: what the answers-first gate let through (None: no workflows, the direct chain).
    done_in_burst: int | None = None


@dataclass
class BurstFigures:
    """One burst of concurrent checkouts, from their start until the work after them settled."""

    seconds: float
    per_second: float
    all_done_per_second: float
    percentiles_ms: tuple[float, float, float]
    cpu_s_per_checkout: dict[str, float]
    settle_seconds: float
    errors: list[str]
    done_in_burst: int | None = None


@dataclass
class BenchConfig:
    checkouts: int
    samples: int
    slow_samples: int
    slow_seconds: float
    workers: int
    sqlite_pragmas: list[str]
    variants: bool  # also bare_local and saga_activities
    rounds: int = 3
    worker_env: dict[str, str] = field(default_factory=dict)
    cpu_count: int | None = field(default_factory=os.cpu_count)


@dataclass
class BenchReport:
    config: BenchConfig
    modes: dict[str, ModeFigures]

    def ratios(self) -> dict[str, float | None]:
        """The issue's three ratios for the checkout (`saga`), and for `saga_activities`."""

        def figure(mode: str, name: str) -> float | None:
            figures = self.modes.get(mode)
            return None if figures is None else float(getattr(figures, name))

        ratios: dict[str, float | None] = {}
        for saga in SAGA_MODES:
            if saga not in self.modes:
                continue
            ratios[f"{saga}_vs_bare_throughput"] = self._throughput_ratio(saga, "bare")
            ratios[f"{saga}_vs_bare_p50"] = ratio(figure(saga, "p50_ms"), figure("bare", "p50_ms"))
            slow = self.modes.get(f"{saga}_slow")
            fast_p50 = (slow.paired_fast_p50_ms if slow else None) or figure(saga, "p50_ms")
            ratios[f"{saga}_slow_vs_fast_p50"] = ratio(figure(f"{saga}_slow", "p50_ms"), fast_p50)
        return ratios

    def _throughput_ratio(self, mode: str, baseline: str) -> float | None:
        """The median over the burst rounds of mode's checkouts/s over the baseline's in the
        same round: a slower or faster host in one round moves both."""
        rounds = self.round_ratios(mode, baseline)
        return round(statistics.median(rounds), 3) if rounds else None

    def round_ratios(self, mode: str, baseline: str) -> list[float]:
        """Mode's checkouts/s over the baseline's, round by round (one figure when the rounds
        do not pair up)."""
        a, b = self.modes.get(mode), self.modes.get(baseline)
        if a is None or b is None:
            return []
        pairs = [(a.per_second, b.per_second)]
        if a.per_second_rounds and len(a.per_second_rounds) == len(b.per_second_rounds):
            pairs = list(zip(a.per_second_rounds, b.per_second_rounds, strict=True))
        if any(base <= 0 for _, base in pairs):
            return []
        return [round(x / base, 3) for x, base in pairs]

    def throughput_rounds(self) -> dict[str, list[float]]:
        """Each throughput ratio's figures per round, whose median `ratios()` reports."""
        return {
            f"{saga}_vs_bare_throughput": self.round_ratios(saga, "bare")
            for saga in SAGA_MODES
            if saga in self.modes
        }

    def targets_met(self) -> dict[str, bool | None]:
        return {
            name: None if value is None else meets(value, *target_of(name))
            for name, value in self.ratios().items()
        }

    def as_json(self) -> str:
        return json.dumps(
            {
                "config": asdict(self.config),
                **{name: asdict(figures) for name, figures in self.modes.items()},
                "ratios": self.ratios(),
                "throughput_rounds": self.throughput_rounds(),
                "targets_met": self.targets_met(),
            }
        )


def target_of(ratio_name: str) -> tuple[str, float]:
    """The issue's target for a ratio: (">=" or "<=", bound)."""
    if ratio_name.endswith("_throughput"):
        return (">=", TARGET_THROUGHPUT_RATIO)
    if ratio_name.endswith("_slow_vs_fast_p50"):
        return ("<=", TARGET_SLOW_P50_RATIO)
    return ("<=", TARGET_P50_RATIO)


class CpuMeter:
    """CPU seconds (user + system) used so far by each role's processes."""

    def __init__(self, stack: Stack) -> None:
        self._groups: dict[str, list[psutil.Process]] = {role: [] for role in ROLES}
        for proc in stack.processes:
            self._groups[_role(proc)].append(psutil.Process(proc.process.pid))
        self._groups["client"].append(psutil.Process())

    def read(self) -> dict[str, float]:
        return {role: sum(cpu_seconds(p) for p in procs) for role, procs in self._groups.items()}

    def busy(self) -> float:
        """CPU seconds of everything but this process (the client)."""
        figures = self.read()
        return sum(v for role, v in figures.items() if role != "client")


def _role(proc: ManagedProcess) -> str:
    if proc.name == "temporal":
        return "server"
    if proc.name in SERVICES:
        return "services"
    return "worker"


async def settle(
    meter: CpuMeter,
    client: Client,
    window: float = SETTLE_WINDOW_SECONDS,
    limit: float = SETTLE_LIMIT_SECONDS,
) -> float:
    """Wait until the work after the answers (commit, fan-out) is done: no checkout or job
    still running, and our processes quiet over a window. Seconds until then (the last,
    quiet window not counted)."""
    started = time.monotonic()
    before = meter.busy()
    while time.monotonic() - started < limit:
        await asyncio.sleep(window)
        now = meter.busy()
        quiet = now - before < SETTLE_CPU_SHARE * window
        before = now
        if quiet and (await client.count_workflows(IN_FLIGHT_QUERY)).count == 0:
            break
    return max(0.0, time.monotonic() - started - window)


async def _timed(call: Call, order_id: str) -> tuple[float, str | None]:
    """Seconds until the answer, and what went wrong (None: CONFIRMED)."""
    started = time.monotonic()
    try:
        error = None if await call(order_id) else f"{order_id}: not confirmed"
    except Exception as err:
        error = f"{order_id}: {type(err).__name__}: {err}"
    return time.monotonic() - started, error


async def measure_slowed(
    mode: str,
    call: Call,
    *,
    samples: int,
    burst: int,
    meter: CpuMeter,
    client: Client,
    run_id: str,
    slow_down: Callable[[bool], Awaitable[None]],
) -> ModeFigures:
    """Unloaded samples with the services slowed, each paired with a fast one just before it
    (`slow_down` turns the delay on or off), then one burst, slowed."""
    unloaded, paired_fast = [], []
    for i in range(samples):
        await slow_down(False)
        paired_fast.append(await _unloaded_sample(call, f"{run_id}-{mode}-f{i}", meter, client))
        await slow_down(True)
        unloaded.append(await _unloaded_sample(call, f"{run_id}-{mode}-u{i}", meter, client))
    rounds = [await run_burst(call, f"{run_id}-{mode}-b", burst, meter, client)]
    return mode_figures(mode, burst, unloaded, rounds, paired_fast)


async def run_burst(
    call: Call, prefix: str, size: int, meter: CpuMeter, client: Client
) -> BurstFigures:
    """`size` checkouts at once, once the previous work has settled; measured until the work
    after their answers has settled too."""
    await settle(meter, client)
    cpu_before = meter.read()
    # The server stamps the start times; a margin for the clock read before the first start.
    since = datetime.now(UTC) - timedelta(seconds=0.5)
    started = time.monotonic()
    loaded = await asyncio.gather(*(_timed(call, f"{prefix}{i}") for i in range(size)))
    seconds = time.monotonic() - started
    done_in_burst = await closed_since(client, since)
    settle_seconds = await settle(meter, client)
    cpu_after = meter.read()
    per_checkout = {role: round((cpu_after[role] - cpu_before[role]) / size, 4) for role in ROLES}
    per_checkout["total"] = round(sum(per_checkout.values()), 4)
    return BurstFigures(
        seconds=round(seconds, 3),
        per_second=round(size / seconds, 2),
        all_done_per_second=round(size / (seconds + settle_seconds), 2),
        percentiles_ms=percentiles_ms([s for s, error in loaded if error is None]),
        cpu_s_per_checkout=per_checkout,
        settle_seconds=round(settle_seconds, 1),
        errors=[error for _, error in loaded if error is not None],
        done_in_burst=done_in_burst,
    )


async def closed_since(client: Client, since: datetime) -> int | None:
    """How many of the workflows started since `since` have closed; None if none started."""
    started = f"{BURST_WORKFLOWS} AND StartTime >= '{visibility_time(since)}'"
    if (await client.count_workflows(started)).count == 0:
        return None
    return (await client.count_workflows(f"{started} AND ExecutionStatus != 'Running'")).count


def mode_figures(
    mode: str,
    checkouts: int,
    unloaded: list[tuple[float, str | None]],
    rounds: list[BurstFigures],
    paired_fast: list[tuple[float, str | None]] | None = None,
) -> ModeFigures:
    """A mode's figures: the unloaded samples' percentiles, and the median burst round."""
    median = sorted(rounds, key=lambda burst: burst.per_second)[(len(rounds) - 1) // 2]
    p50, p95, p99 = percentiles_ms([s for s, error in unloaded if error is None])
    b50, b95, b99 = median.percentiles_ms
    errors = [error for _, error in [*unloaded, *(paired_fast or [])] if error is not None]
    errors += [error for burst in rounds for error in burst.errors]
    fast_ok = [seconds for seconds, error in paired_fast or [] if error is None]
    return ModeFigures(
        mode=mode,
        checkouts=checkouts,
        errors=len(errors),
        first_errors=errors[:3],
        seconds=median.seconds,
        per_second=median.per_second,
        all_done_per_second=median.all_done_per_second,
        p50_ms=p50,
        p95_ms=p95,
        p99_ms=p99,
        burst_p50_ms=b50,
        burst_p95_ms=b95,
        burst_p99_ms=b99,
        cpu_s_per_checkout=median.cpu_s_per_checkout,
        settle_seconds=median.settle_seconds,
        paired_fast_p50_ms=percentiles_ms(fast_ok)[0] if fast_ok else None,
        per_second_rounds=[burst.per_second for burst in rounds],
        done_in_burst=median.done_in_burst,
    )


async def _unloaded_sample(
    call: Call, order_id: str, meter: CpuMeter, client: Client
) -> tuple[float, str | None]:
    """One checkout once nothing else is in flight, not even the previous one's fan-out."""
    await settle(meter, client, window=UNLOADED_WINDOW_SECONDS, limit=UNLOADED_LIMIT_SECONDS)
    return await _timed(call, order_id)


def bare_call(client: Client, local: bool) -> Call:
    async def call(order_id: str) -> bool:
        start = WithStartWorkflowOperation(
            BareWorkflow.run,
            local,
            id=f"bench-{order_id}",
            task_queue=BARE_TASK_QUEUE,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )
        answer = await client.execute_update_with_start_workflow(
            BareWorkflow.decision, start_workflow_operation=start
        )
        return answer == "CONFIRMED"

    return call


def direct_call(calls: ShopCalls, payment_token: str) -> Call:
    async def call(order_id: str) -> bool:
        await direct_checkout(calls, bench_request(order_id, payment_token))
        return True

    return call


async def _slow_down(urls: dict[str, str], headers: dict[str, str], seconds: float) -> None:
    body = {"delay_seconds": seconds} if seconds > 0 else {}
    async with httpx.AsyncClient(headers=headers, timeout=10.0) as http:
        for name in SLOWED_SERVICES:
            (await http.put(f"{urls[name]}/admin/fault", json=body)).raise_for_status()


async def run_bench(
    stack: Stack, config: BenchConfig, progress: Callable[[str], None] = lambda _: None
) -> BenchReport:
    env = {**os.environ, **stack.env}
    headers = stack.service_headers
    await stock_bench_sku(stack.service_urls, headers)
    # Tokenized once, as a saved card: the checkouts carry the token, never the number.
    card = await tokenize_card(stack.service_urls["payments"], stack.publishable_key, CARD_OK)
    client = await connect_temporal(env)
    task_queue = Settings().task_queue
    meter = CpuMeter(stack)
    run_id = uuid.uuid4().hex[:8]
    modes: dict[str, ModeFigures] = {}
    async with shop_calls(stack.service_urls, headers) as http:
        calls: dict[str, Call] = {
            "bare": bare_call(client, local=False),
            "saga": saga_call(client, task_queue, card.token),
            "direct": direct_call(http, card.token),
        }
        slowed = ["saga", "direct"]
        if config.variants:
            calls["bare_local"] = bare_call(client, local=True)
            calls["saga_activities"] = saga_call(
                client, task_queue, card.token, CheckoutActivitiesWorkflow
            )
            slowed.append("saga_activities")
        # Warm up: connections, workflow caches, the services' first SQLite writes.
        for mode, call in calls.items():
            await asyncio.gather(*(_timed(call, f"{run_id}-{mode}-w{i}") for i in range(5)))
        # The modes take turns, so a host that speeds up or slows down during the run moves
        # them all alike: each unloaded sample, then each burst round (its order rotated).
        names = list(calls)
        unloaded: dict[str, list[tuple[float, str | None]]] = {mode: [] for mode in names}
        progress(f"{', '.join(names)} in turn: {config.samples} unloaded samples each")
        for i in range(config.samples):
            for mode in names:
                order_id = f"{run_id}-{mode}-u{i}"
                unloaded[mode].append(await _unloaded_sample(calls[mode], order_id, meter, client))
        rounds: dict[str, list[BurstFigures]] = {mode: [] for mode in names}
        for r in range(config.rounds):
            for mode in names[r % len(names) :] + names[: r % len(names)]:
                progress(f"round {r + 1}/{config.rounds}: {mode}, {config.checkouts} at once")
                prefix = f"{run_id}-{mode}-r{r}-"
                burst = await run_burst(calls[mode], prefix, config.checkouts, meter, client)
                rounds[mode].append(burst)
        for mode in names:
            modes[mode] = mode_figures(mode, config.checkouts, unloaded[mode], rounds[mode])

        async def slow_down(on: bool) -> None:
            await _slow_down(stack.service_urls, headers, config.slow_seconds if on else 0)

        try:
            for mode in slowed:
                slow = f"{mode}_slow"
                progress(
                    f"{slow}: {', '.join(SLOWED_SERVICES)} slowed by {config.slow_seconds:g} s"
                    " (each sample paired with a fast one)"
                )
                modes[slow] = await measure_slowed(
                    slow,
                    calls[mode],
                    samples=config.slow_samples,
                    burst=config.checkouts,
                    meter=meter,
                    client=client,
                    run_id=run_id,
                    slow_down=slow_down,
                )
        finally:
            await slow_down(False)
    return BenchReport(config, modes)


def report_table(report: BenchReport) -> Table:
    config = report.config
    table = Table(
        title=(
            f"bench: burst of {config.checkouts} (median of {config.rounds} rounds), "
            f"{config.samples} unloaded samples "
            f"({config.slow_samples} when slowed), {config.workers} worker(s), "
            f"{config.cpu_count} CPUs"
        )
    )
    table.add_column("mode")
    for column in (
        "checkouts/s",
        "all done /s",
        "done in burst",
        "answer p50 ms",
        "p95",
        "p99",
        "burst p50 ms",
        "p95",
        "p99",
        "CPU s/checkout server",
        "worker",
        "services",
        "client",
        "total",
        "errors",
    ):
        table.add_column(column, justify="right")
    for figures in report.modes.values():
        cpu = figures.cpu_s_per_checkout
        table.add_row(
            figures.mode,
            f"{figures.per_second:.1f}",
            f"{figures.all_done_per_second:.1f}",
            "-" if figures.done_in_burst is None else str(figures.done_in_burst),
            f"{figures.p50_ms:.0f}",
            f"{figures.p95_ms:.0f}",
            f"{figures.p99_ms:.0f}",
            f"{figures.burst_p50_ms:.0f}",
            f"{figures.burst_p95_ms:.0f}",
            f"{figures.burst_p99_ms:.0f}",
            *(f"{cpu[role]:.3f}" for role in (*ROLES, "total")),
            str(figures.errors),
        )
    return table


def ratios_table(report: BenchReport) -> Table:
    table = Table(title="targets (ratios)")
    for column in ("ratio", "value", "target", "met", "per round"):
        table.add_column(column)
    met = report.targets_met()
    rounds = report.throughput_rounds()
    for name, value in report.ratios().items():
        op, bound = target_of(name)
        shown = "-" if value is None else f"{value:.2f}"
        per_round = ", ".join(f"{r:.2f}" for r in rounds.get(name, []))
        table.add_row(name, shown, f"{op} {bound}", str(met[name]), per_round)
    return table


def bench_command(
    checkouts: Annotated[
        int, typer.Option(min=1, max=10_000, help="Burst size: checkouts started at once.")
    ] = 100,
    samples: Annotated[
        int, typer.Option(min=1, max=10_000, help="Unloaded samples (one at a time) per mode.")
    ] = 20,
    slow_samples: Annotated[
        int, typer.Option(min=1, max=1000, help="Unloaded samples with slow email/warehouse.")
    ] = 10,
    rounds: Annotated[
        int,
        typer.Option(
            min=1,
            max=20,
            help="Burst rounds per mode, the modes in turn; the median round is reported.",
        ),
    ] = 3,
    slow_seconds: Annotated[
        float, typer.Option(min=0.1, max=30, help="Delay added to email and warehouse.")
    ] = 2.0,
    workers: Annotated[int, typer.Option(min=1, max=16, help="Checkout worker processes.")] = 1,
    sqlite_pragma: Annotated[
        list[str] | None,
        typer.Option(help="Dev server SQLite pragma (repeatable); default: the launcher's."),
    ] = None,
    default_sqlite: Annotated[
        bool, typer.Option(help="No SQLite pragma at all (the dev server's own defaults).")
    ] = False,
    variants: Annotated[
        bool,
        typer.Option(
            help="Also measure bare_local (bare with local activities) and saga_activities "
            "(the checkout with every step an activity), fast and slowed."
        ),
    ] = True,
    max_concurrent_activities: Annotated[
        int | None, typer.Option(min=1, help="Worker tuning: activity slots per worker.")
    ] = None,
    max_concurrent_workflow_tasks: Annotated[
        int | None, typer.Option(min=2, help="Worker tuning: workflow task slots per worker.")
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="SQLite files and logs (default: a new temp dir).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON line with every figure.")] = (
        False
    ),
    sustained: Annotated[
        bool,
        typer.Option(
            help="Sustained load instead of bursts: open-loop arrivals at stepped rates, for "
            "the checkout, its no-op twin and DBOS; capacity and cost per checkout."
        ),
    ] = False,
    rate: Annotated[
        list[float] | None,
        typer.Option(
            min=0.1,
            max=1000,
            help="--sustained: a rate of the ladder, checkouts/s (repeatable; default "
            "2 4 6 8 10 12 14 16).",
        ),
    ] = None,
    hold_seconds: Annotated[
        float,
        typer.Option(
            min=1,
            max=3600,
            help="--sustained: how long each rate is held (capacity is defined over 60).",
        ),
    ] = 60.0,
    mode: Annotated[
        list[str] | None,
        typer.Option(help="--sustained: checkout, twin or dbos (repeatable; default all)."),
    ] = None,
    keep_going: Annotated[
        bool,
        typer.Option(help="--sustained: run every rate (default: a mode stops after 2 missed)."),
    ] = False,
) -> None:
    """Benchmark bare Temporal, the checkout saga and direct HTTP calls side by side.

    Starts its own dev server, services and workers; prints a table (or one JSON line).
    With --sustained: the sustained rates (harness/bench/sustained.py) instead of the bursts.
    """
    worker_env = {
        # No reconciler sweeps during the measurement.
        "CHECKOUT_RECONCILE_EVERY_SECONDS": "0",
    }
    if max_concurrent_activities is not None:
        worker_env["CHECKOUT_WORKER_MAX_CONCURRENT_ACTIVITIES"] = str(max_concurrent_activities)
    if max_concurrent_workflow_tasks is not None:
        worker_env["CHECKOUT_WORKER_MAX_CONCURRENT_WORKFLOW_TASKS"] = str(
            max_concurrent_workflow_tasks
        )
    pragmas = [] if default_sqlite else list(sqlite_pragma or DEV_SERVER_SQLITE_PRAGMAS)
    if sustained:
        # harness/bench/sustained.py builds on this module: imported only when asked for.
        from harness.bench import sustained as sustained_bench

        modes = list(mode or sustained_bench.MODES)
        unknown = sorted(set(modes) - set(sustained_bench.MODES))
        if unknown:
            raise typer.BadParameter(f"unknown mode(s) {', '.join(unknown)}", param_hint="--mode")
        directory = data_dir or Path(tempfile.mkdtemp(prefix="checkout-saga-sustained-"))
        sustained_bench.sustained_command(
            sustained_bench.SustainedConfig(
                rates=sorted(set(rate or sustained_bench.DEFAULT_RATES)),
                hold_seconds=hold_seconds,
                modes=[m for m in sustained_bench.MODES if m in modes],
                keep_going=keep_going,
                workers=workers,
                sqlite_pragmas=pragmas,
                worker_env=worker_env,
            ),
            directory,
            as_json,
        )
        return
    config = BenchConfig(
        checkouts=checkouts,
        samples=samples,
        slow_samples=slow_samples,
        slow_seconds=slow_seconds,
        workers=workers,
        sqlite_pragmas=pragmas,
        variants=variants,
        rounds=rounds,
        worker_env=worker_env,
    )
    errors = Console(stderr=True)
    directory = data_dir or Path(tempfile.mkdtemp(prefix="checkout-saga-bench-"))
    errors.print(f"Data and logs: {directory}")
    try:
        with bench_stack(
            directory, config.workers, config.sqlite_pragmas, config.worker_env
        ) as stack:
            report = asyncio.run(run_bench(stack, config, progress=errors.print))
    except LaunchError as err:
        errors.print(f"[red]Could not start the bench: {err}[/red]")
        raise typer.Exit(1) from err
    if as_json:
        print(report.as_json())
    else:
        console = Console(width=None if sys.stdout.isatty() else 200)
        console.print(report_table(report))
        console.print(ratios_table(report))
    failed = False
    for figures in report.modes.values():
        # The direct chain has no retries: a dropped connection is its answer, not our fault.
        baseline = figures.mode.startswith("direct")
        for error in figures.first_errors:
            errors.print(f"[{'yellow' if baseline else 'red'}]{error}[/]")
            failed = failed or not baseline
    if failed:
        raise typer.Exit(1)
