"""`python -m harness.bench.dbos_measure --checkouts 20`: the DBOS checkout alone, measured.

Starts its own Postgres (harness/bench/postgres.py) and every service (stack/launcher.py), stocks
the bench's SKU (harness/bench/shop.py), then places the bench's checkout:

1. a few at once to warm up (connections, the services' first writes);
2. N one at a time, each once the previous one's work is all done: the unloaded answer;
3. N at once: answers/s until the last answer, all-done/s until no workflow is in flight
   (every commit and consumer done), and the CPU seconds per checkout of this process (the
   caller and DBOS, one process), Postgres's processes and the services, read with psutil
   from just before the burst until all is done.

Prints the figures (or one JSON line); asserts no target.
"""

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from harness.bench.cpu import cpu_seconds
from harness.bench.dbos_checkout import dbos_decide, failed_workflows, running_dbos, wait_all_done
from harness.bench.postgres import BENCH_SETTINGS, DBOS_DATABASE, Postgres, running_postgres
from harness.bench.shop import bench_request, stock_bench_sku
from models.payments import CARD_OK
from services.auth import (
    PUBLISHABLE_KEY_ENV,
    SERVICE_TOKEN_ENV,
    bearer_headers,
    new_publishable_key,
    new_token,
)
from stack.launcher import SERVICES, ManagedProcess, start_services
from starter.payment_methods import tokenize_card
from temporal_saga.models import Outcome

WARM_UP = 5
ROLES = ("process", "postgres", "services")


@dataclass
class DbosFigures:
    checkouts: int
    unloaded_p50_ms: float
    unloaded_p95_ms: float
    burst_answers_per_second: float
    burst_all_done_per_second: float
    burst_p50_ms: float
    cpu_s_per_checkout: dict[str, float]
    errors: list[str] = field(default_factory=list)
    failed_workflows: list[str] = field(default_factory=list)
    postgres_settings: dict[str, str] = field(default_factory=dict)
    cpu_count: int | None = field(default_factory=os.cpu_count)


class CpuMeter:
    """CPU seconds (user + system) so far of this process, Postgres's, and the services'."""

    def __init__(self, postgres: Postgres, services: Sequence[ManagedProcess]) -> None:
        self._postgres = postgres
        self._services = [psutil.Process(proc.process.pid) for proc in services]

    def read(self) -> dict[str, float]:
        return {
            "process": cpu_seconds(psutil.Process(), children=False),
            # Read each time: Postgres starts a backend per new connection.
            "postgres": sum(cpu_seconds(p) for p in self._postgres.processes()),
            "services": sum(cpu_seconds(p) for p in self._services),
        }


def _ms(seconds: Sequence[float], percent: int) -> float:
    if not seconds:
        return 0.0
    if len(seconds) == 1:
        return round(seconds[0] * 1000, 1)
    return round(statistics.quantiles(seconds, n=100, method="inclusive")[percent - 1] * 1000, 1)


async def _timed(order_id: str, payment_token: str) -> tuple[float, str | None]:
    """Seconds until the answer, and what went wrong (None: CONFIRMED)."""
    started = time.monotonic()
    try:
        outcome = await dbos_decide(bench_request(order_id, payment_token))
        error = None if outcome is Outcome.CONFIRMED else f"{order_id}: {outcome.value}"
    except Exception as err:
        error = f"{order_id}: {type(err).__name__}: {err}"
    return time.monotonic() - started, error


async def measure(
    checkouts: int,
    postgres: Postgres,
    services: Sequence[ManagedProcess],
    token: str,
    publishable_key: str,
) -> DbosFigures:
    urls = {proc.name: proc.address for proc in services}
    headers = bearer_headers(token)
    await stock_bench_sku(urls, headers)
    # Tokenized once, as a saved card: the checkouts carry the token, never the number.
    card = (await tokenize_card(urls["payments"], publishable_key, CARD_OK)).token
    run_id = uuid.uuid4().hex[:8]
    meter = CpuMeter(postgres, services)
    async with running_dbos(postgres.url_for(DBOS_DATABASE), urls, headers):
        await asyncio.gather(*(_timed(f"{run_id}-w{i}", card) for i in range(WARM_UP)))
        await wait_all_done()
        unloaded = []
        for i in range(checkouts):
            unloaded.append(await _timed(f"{run_id}-u{i}", card))
            await wait_all_done()
        before = meter.read()
        started = time.monotonic()
        burst = await asyncio.gather(*(_timed(f"{run_id}-b{i}", card) for i in range(checkouts)))
        answered = time.monotonic() - started
        await wait_all_done(poll_seconds=0.05)
        all_done = time.monotonic() - started
        after = meter.read()
        failed = await failed_workflows()
    cpu = {role: round((after[role] - before[role]) / checkouts, 4) for role in ROLES}
    cpu["total"] = round(sum(cpu.values()), 4)
    return DbosFigures(
        checkouts=checkouts,
        unloaded_p50_ms=_ms([s for s, error in unloaded if error is None], 50),
        unloaded_p95_ms=_ms([s for s, error in unloaded if error is None], 95),
        burst_answers_per_second=round(checkouts / answered, 2),
        burst_all_done_per_second=round(checkouts / all_done, 2),
        burst_p50_ms=_ms([s for s, error in burst if error is None], 50),
        cpu_s_per_checkout=cpu,
        errors=[error for _, error in [*unloaded, *burst] if error is not None],
        failed_workflows=failed,
        postgres_settings=dict(postgres.settings),
    )


def run(
    checkouts: int, data_dir: Path, postgres_settings: Mapping[str, str] = BENCH_SETTINGS
) -> DbosFigures:
    """Start the services and Postgres, measure, stop them (on error too)."""
    token, key = new_token(), new_publishable_key()
    services = start_services(
        SERVICES, data_dir, {SERVICE_TOKEN_ENV: token, PUBLISHABLE_KEY_ENV: key}
    )
    try:
        log_path = data_dir / "postgres.log"
        with running_postgres(log_path=log_path, settings=postgres_settings) as postgres:
            return asyncio.run(measure(checkouts, postgres, services, token, key))
    finally:
        for proc in reversed(services):
            proc.stop()


def report(figures: DbosFigures) -> str:
    cpu = figures.cpu_s_per_checkout
    return "\n".join(
        [
            f"DBOS checkout: {figures.checkouts} one at a time, then {figures.checkouts} at "
            f"once ({figures.cpu_count} CPUs)",
            "Postgres: " + " ".join(f"{k}={v}" for k, v in figures.postgres_settings.items()),
            f"unloaded answer p50 {figures.unloaded_p50_ms:.1f} ms, "
            f"p95 {figures.unloaded_p95_ms:.1f} ms",
            f"burst: {figures.burst_answers_per_second:.1f} answers/s, "
            f"{figures.burst_all_done_per_second:.1f} all done/s, "
            f"answer p50 {figures.burst_p50_ms:.1f} ms",
            "CPU s/checkout: " + ", ".join(f"{role} {cpu[role]:.4f}" for role in cpu),
            f"errors: {len(figures.errors)}, workflows in ERROR: {len(figures.failed_workflows)}",
            *figures.errors[:3],
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.bench.dbos_measure", description=__doc__
    )
    parser.add_argument("--checkouts", type=int, default=20, help="unloaded samples; burst size")
    parser.add_argument("--data-dir", type=Path, help="services' SQLite files and all logs")
    parser.add_argument(
        "--pg-setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a Postgres setting over the bench's (repeatable), e.g. synchronous_commit=on",
    )
    parser.add_argument("--json", action="store_true", help="one JSON line")
    args = parser.parse_args(argv)
    if not 1 <= args.checkouts <= 1000:
        parser.error("--checkouts: 1 to 1000")
    settings = dict(BENCH_SETTINGS)
    for setting in args.pg_setting:
        name, equals, value = setting.partition("=")
        if not equals or not name:
            parser.error(f"--pg-setting {setting!r}: not NAME=VALUE")
        settings[name] = value
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="checkout-saga-dbos-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    print(f"Data and logs: {data_dir}", file=sys.stderr)
    figures = run(args.checkouts, data_dir, settings)
    print(json.dumps(asdict(figures)) if args.json else report(figures))
    return 1 if figures.errors or figures.failed_workflows else 0


if __name__ == "__main__":
    sys.exit(main())
