"""The simulation, as long as you like:

    python -m tests.engine.simulation --schedules 10000 --seed 1 [--concurrency 16]
        [--terminate-every 10] [--mutation NAME] [--json]

It starts a Temporal dev server of its own and the simulation's workers, runs the schedules
of seeds S, S+1, ... (every `--terminate-every`-th one also terminated mid-way and settled
by the sweep), shows a progress bar, then a table of the rules (how many schedules each
checked, how many broke it) and of what was exercised (events, outcomes, options,
decisions), and the run's time. Every schedule that broke a rule is printed as a line of
JSON (the rule, its seed, what broke); the first for each rule is shrunk to the smallest
that still breaks it and printed as its seed and its plan's JSON, to paste into
tests/engine/test_simulation.py's REGRESSIONS. Exit 1 if any rule broke.
"""

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from collections import Counter

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table
from temporalio.client import Client

from tests.engine.simulation.mutations import MUTATIONS, mutated
from tests.engine.simulation.plans import Plan, make_plan
from tests.engine.simulation.rules import RULES
from tests.engine.simulation.runner import (
    DRIVER_FAILED,
    Outcome,
    run_plans,
    simulation_server,
)
from tests.engine.simulation.shrink import shrink, size

console = Console(stderr=True)


def plans_of(seed: int, schedules: int, terminate_every: int) -> list[Plan]:
    return [
        make_plan(s, terminate=terminate_every > 0 and s % terminate_every == 0)
        for s in range(seed, seed + schedules)
    ]


async def shrunk(client: Client, plan: Plan, rule: str) -> Plan:
    """The smallest schedule found that still breaks `rule`."""
    tries = Counter[str]()

    async def breaks(candidates: list[Plan]) -> list[bool]:
        renamed = []
        for candidate in candidates:
            tries[plan.plan_id] += 1
            renamed.append(
                candidate.model_copy(update={"plan_id": f"{plan.plan_id}-s{tries[plan.plan_id]}"})
            )
        outcomes = await run_plans(client, renamed)
        return [any(name == rule for name, _ in o.violations) for o in outcomes]

    smallest = await shrink(plan, breaks)
    return smallest.model_copy(update={"plan_id": plan.plan_id})


def summary(outcomes: list[Outcome], seconds: float) -> Table:
    exercised: Counter[str] = Counter()
    broken: Counter[str] = Counter()
    for outcome in outcomes:
        exercised.update(outcome.exercised)
        broken.update(name for name, _ in outcome.violations)
    table = Table(title=f"{len(outcomes)} schedules in {seconds:.0f} s")
    table.add_column("rule or branch")
    table.add_column("schedules", justify="right")
    table.add_column("broken", justify="right")
    for rule in RULES:
        name = rule.__name__
        table.add_row(name, str(exercised[f"rule {name}"]), str(broken[name]))
    table.add_row("every_saga_ends", str(len(outcomes)), str(broken["every_saga_ends"]))
    table.add_row(DRIVER_FAILED, str(len(outcomes)), str(broken[DRIVER_FAILED]))
    table.add_section()
    for key in sorted(k for k in exercised if not k.startswith("rule ")):
        table.add_row(key, str(exercised[key]), "")
    return table


async def simulate(args: argparse.Namespace) -> int:
    plans = plans_of(args.seed, args.schedules, args.terminate_every)
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        if args.mutation:
            stack.enter_context(mutated(args.mutation))
        async with simulation_server() as client:
            with Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
            ) as progress:
                task = progress.add_task("schedules", total=len(plans))
                outcomes = await run_plans(
                    client,
                    plans,
                    concurrency=args.concurrency,
                    on_done=lambda _: progress.advance(task),
                )
            seconds = time.monotonic() - started
            console.print(summary(outcomes, seconds))
            failing = [o for o in outcomes if o.violations]
            for outcome in failing:  # every broken schedule, then the first of each rule shrunk
                for rule, words in outcome.violations:
                    print(json.dumps({"broken": rule, "seed": outcome.plan.seed, "words": words}))
            first_by_rule: dict[str, Outcome] = {}
            for outcome in failing:
                first_by_rule.setdefault(outcome.violations[0][0], outcome)
            for rule, outcome in first_by_rule.items():
                small = await shrunk(client, outcome.plan, rule)
                print(
                    json.dumps(
                        {
                            "rule": rule,
                            "seed": outcome.plan.seed,
                            "words": outcome.violations[0][1],
                            "size": [size(outcome.plan), size(small)],
                            "plan": small.model_dump(mode="json", exclude_defaults=True),
                        }
                    )
                )
    if args.json:
        print(json.dumps({"schedules": len(outcomes), "failing": len(failing), "seconds": seconds}))
    return 1 if failing else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.engine.simulation", description=__doc__)
    parser.add_argument("--schedules", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--terminate-every",
        type=int,
        default=10,
        help="every N-th schedule is also terminated mid-way and settled by the sweep (0: none)",
    )
    parser.add_argument("--mutation", choices=sorted(MUTATIONS))
    parser.add_argument("--json", action="store_true", help="a last line of JSON figures")
    args = parser.parse_args(argv)
    if args.schedules < 1 or args.concurrency < 1:
        parser.error("--schedules and --concurrency take a number from 1 up")
    return asyncio.run(simulate(args))


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)  # temporalio can abort at interpreter exit (sdk-python #300)
