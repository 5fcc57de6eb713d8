"""`python -m harness.bench --json` with a tiny burst: every figure is there and makes sense.

Not the targets (those depend on the machine; docs/performance.md): the shape of the JSON
line, and what holds on any machine: the direct chain waits for the slowed services, the saga
answers without them.
"""

import asyncio
import json
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import PollerBehaviorAutoscaling, PollerBehaviorSimpleMaximum

from harness.bench import sandbox as sandbox_probe
from harness.bench.benchmark import (
    ROLES,
    BenchConfig,
    BenchReport,
    ModeFigures,
    closed_since,
)
from harness.bench.calls import percentiles_ms
from tests.support.harness import run_harness
from worker.settings import Settings
from worker.tuning import worker_tuning

MODES = (
    "bare",
    "saga",
    "direct",
    "bare_local",
    "saga_activities",
    "saga_slow",
    "direct_slow",
    "saga_activities_slow",
)

SLOW_SECONDS = 1.5


@pytest.mark.slow
def test_bench_json_has_every_figure(tmp_path: Path) -> None:
    done = run_harness(
        "harness.bench",
        "--json",
        "--checkouts",
        "4",
        "--samples",
        "3",
        "--slow-samples",
        "2",
        "--rounds",
        "2",
        "--slow-seconds",
        str(SLOW_SECONDS),
        "--data-dir",
        str(tmp_path),
        timeout=280,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, done.stdout
    report = json.loads(lines[0])

    assert report["config"]["checkouts"] == 4
    assert report["config"]["rounds"] == 2
    assert report["config"]["sqlite_pragmas"] == ["synchronous=OFF"]
    for mode in MODES:
        figures = report[mode]
        assert figures["mode"] == mode
        assert figures["checkouts"] == 4
        assert figures["errors"] == 0, figures["first_errors"]
        assert figures["per_second"] > 0
        # Two burst rounds for the modes that take turns, one for the slowed ones.
        rounds = figures["per_second_rounds"]
        assert len(rounds) == (1 if mode.endswith("_slow") else 2), (mode, rounds)
        assert figures["per_second"] in rounds
        # Everything done (commit, fan-out) comes no sooner than the last answer.
        assert 0 < figures["all_done_per_second"] <= figures["per_second"]
        # How many checkouts' work after the answer was done by then: Temporal modes only.
        done = figures["done_in_burst"]
        if mode.startswith("direct"):
            assert done is None
        else:
            assert isinstance(done, int) and 0 <= done <= 4, (mode, done)
        assert 0 < figures["p50_ms"] <= figures["p95_ms"] <= figures["p99_ms"]
        assert 0 < figures["burst_p50_ms"] <= figures["burst_p95_ms"] <= figures["burst_p99_ms"]
        cpu = figures["cpu_s_per_checkout"]
        assert set(cpu) == {*ROLES, "total"}
        assert all(value >= 0 for value in cpu.values())
        assert cpu["total"] > 0
    # Every mode but bare Temporal calls the services (summed: psutil counts in 10 ms ticks,
    # and a burst of 4 may cost one service less than a tick).
    assert sum(report[m]["cpu_s_per_checkout"]["services"] for m in MODES if "bare" not in m) > 0
    # Only Temporal modes use the server and workers.
    assert report["saga"]["cpu_s_per_checkout"]["server"] > 0
    assert report["saga"]["cpu_s_per_checkout"]["worker"] > 0
    assert report["bare"]["cpu_s_per_checkout"]["worker"] > 0

    # The direct chain waits for email and warehouse, one after the other...
    slowed_by_ms = 2 * SLOW_SECONDS * 1000
    assert report["direct_slow"]["p50_ms"] >= report["direct"]["p50_ms"] + 0.95 * slowed_by_ms
    # ...the saga answers before the fan-out reaches them.
    for saga in ("saga_slow", "saga_activities_slow"):
        assert report[saga]["p50_ms"] < report["direct_slow"]["p50_ms"] - slowed_by_ms / 2
    # Slowed samples are compared with fast ones taken in turn with them.
    for mode in MODES:
        paired = report[mode]["paired_fast_p50_ms"]
        assert (paired is not None and paired > 0) == mode.endswith("_slow"), (mode, paired)
    assert report["direct_slow"]["p50_ms"] >= report["direct_slow"]["paired_fast_p50_ms"] + (
        0.95 * slowed_by_ms
    )

    ratios = report["ratios"]
    assert set(ratios) == {
        f"{saga}_{ratio}"
        for saga in ("saga", "saga_activities")
        for ratio in ("vs_bare_throughput", "vs_bare_p50", "slow_vs_fast_p50")
    }
    assert all(value is not None and value > 0 for value in ratios.values())
    # Throughput: each round's saga against that round's bare, then the median (of two: the
    # mean).
    paired = [
        s / b
        for s, b in zip(
            report["saga"]["per_second_rounds"], report["bare"]["per_second_rounds"], strict=True
        )
    ]
    assert abs(ratios["saga_vs_bare_throughput"] - sum(paired) / 2) < 0.002
    rounds = report["throughput_rounds"]
    assert set(rounds) == {"saga_vs_bare_throughput", "saga_activities_vs_bare_throughput"}
    assert rounds["saga_vs_bare_throughput"] == [round(r, 3) for r in paired]
    assert set(report["targets_met"]) == set(ratios)
    # Every process the bench started has stopped.
    pids = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True)
    assert pids.stdout.strip() == "", f"left running: {pids.stdout}"


def _figures(mode: str, rounds: list[float]) -> ModeFigures:
    median = sorted(rounds)[(len(rounds) - 1) // 2] if rounds else 1.0
    return ModeFigures(
        mode=mode,
        checkouts=10,
        errors=0,
        seconds=10 / median,
        per_second=median,
        all_done_per_second=median / 2,
        p50_ms=100.0,
        p95_ms=110.0,
        p99_ms=120.0,
        burst_p50_ms=1000.0,
        burst_p95_ms=1100.0,
        burst_p99_ms=1200.0,
        cpu_s_per_checkout={},
        settle_seconds=1.0,
        first_errors=[],
        per_second_rounds=rounds,
    )


def test_throughput_ratio_pairs_the_rounds() -> None:
    config = BenchConfig(
        checkouts=10,
        samples=1,
        slow_samples=1,
        slow_seconds=1,
        workers=1,
        sqlite_pragmas=[],
        variants=False,
    )
    # The host ran twice as fast in the second round: both modes doubled there.
    steady = BenchReport(
        config, {"bare": _figures("bare", [10, 20, 10]), "saga": _figures("saga", [9, 18, 9])}
    )
    assert steady.ratios()["saga_vs_bare_throughput"] == 0.9
    # The host sped up for bare's later rounds and saga's last one: the medians (20 and 9)
    # would say 0.45; round by round it is 0.9, 0.45, 0.9, whose median is 0.9.
    drifted = BenchReport(
        config, {"bare": _figures("bare", [10, 20, 20]), "saga": _figures("saga", [9, 9, 18])}
    )
    assert drifted.ratios()["saga_vs_bare_throughput"] == 0.9
    assert drifted.throughput_rounds() == {"saga_vs_bare_throughput": [0.9, 0.45, 0.9]}
    # Without rounds (an older report): the plain ratio of the figures.
    single = BenchReport(config, {"bare": _figures("bare", []), "saga": _figures("saga", [])})
    single.modes["bare"].per_second, single.modes["saga"].per_second = 10.0, 7.5
    assert single.ratios()["saga_vs_bare_throughput"] == 0.75


def test_percentiles_stay_within_the_samples() -> None:
    samples = [i / 1000 for i in range(1, 101)]  # 1 ms .. 100 ms
    p50, p95, p99 = percentiles_ms(samples)
    assert (p50, p95, p99) == (50.5, 95.1, 99.0)
    assert percentiles_ms([0.2]) == (200.0, 200.0, 200.0)
    assert percentiles_ms([]) == (0.0, 0.0, 0.0)


def test_worker_tuning_passes_what_is_set_and_our_two_defaults() -> None:
    # The production default: the sandbox with our workflow libraries passed through
    # (tests/worker/test_sandbox_libraries.py), workflow task polls scaled by the server's
    # backlog; the SDK's own tuning otherwise.
    default = worker_tuning(Settings())
    assert set(default) == {"workflow_runner", "workflow_task_poller_behavior"}
    assert isinstance(default["workflow_task_poller_behavior"], PollerBehaviorAutoscaling)
    tuning = worker_tuning(
        Settings(
            worker_max_concurrent_activities=500,
            worker_workflow_task_pollers=4,
        )
    )
    assert set(tuning) == {
        "max_concurrent_activities",
        "workflow_task_poller_behavior",
        "workflow_runner",
    }
    assert tuning["max_concurrent_activities"] == 500
    polls = tuning["workflow_task_poller_behavior"]
    assert isinstance(polls, PollerBehaviorSimpleMaximum) and polls.maximum == 4


async def test_closed_since_counts_the_bursts_closed_workflows(
    dev_env: WorkflowEnvironment,
) -> None:
    """The "done in burst" figure: of the workflows a burst started, those already closed."""
    client = dev_env.client
    before = datetime.now(UTC) - timedelta(seconds=0.5)
    assert await closed_since(client, before) is None  # nothing started yet
    # No worker polls this queue: they stay running until terminated.
    handles = [
        await client.start_workflow(
            "BenchBare", False, id=f"closed-since-{uuid.uuid4().hex}", task_queue="nobody-polls"
        )
        for _ in range(3)
    ]
    await handles[0].terminate("done early")
    counts: list[int | None] = []
    for _ in range(50):  # visibility follows within moments
        counts.append(await closed_since(client, before))
        if counts[-1] == 1:
            break
        await asyncio.sleep(0.1)
    assert counts[-1] == 1, counts
    later = datetime.now(UTC) + timedelta(seconds=1)
    assert await closed_since(client, later) is None  # started before: not this burst's
    for handle in handles[1:]:
        await handle.terminate("test over")


def test_the_sandbox_probe_prints_each_workflow_in_each_sandbox(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`python -m harness.bench.sandbox`: a row per workflow type the worker registers, a figure per
    sandbox (the SDK's, the worker's)."""
    sandbox_probe.main(runs=2)
    rows = [line for line in capsys.readouterr().out.splitlines() if "│" in line]
    for name in ("Checkout", "SendReceipt", "ShipOrder", "SagaSweep"):
        [row] = [r for r in rows if r.strip("│ ").startswith(f"{name} ")]
        figures = [float(cell) for cell in row.split("│")[2:4]]
        assert len(figures) == 2 and all(f > 0 for f in figures), row
