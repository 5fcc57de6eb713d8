"""`python -m harness.bench.sandbox`: what the workflow sandbox costs a worker at the start of
each run.

For every workflow type the checkout worker registers, the median time to make a run's
instance (the sandbox imports the workflow's module and those it imports that are not passed
through, then builds the workflow object), in two sandboxes: the SDK's default (nothing of
ours passed through) and the worker's (our workflow libraries passed through:
worker/tuning.py). No server: the SDK's own validation path (`prepare_workflow`) makes the
instances.
"""

import asyncio
import statistics
import time
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from temporalio import workflow
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from worker.runner import WORKFLOWS
from worker.tuning import sandbox_runner

RUNNERS = {
    "sdk default": SandboxedWorkflowRunner(),
    "worker (libraries passed through)": sandbox_runner(),
}


def instance_ms(runner: SandboxedWorkflowRunner, cls: type, runs: int) -> float:
    """The median milliseconds to make a run's instance of `cls` in `runner`'s sandbox."""
    definition = workflow._Definition.must_from_class(cls)

    async def measure() -> float:
        runner.prepare_workflow(definition)  # warm: the passed-through modules load once
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            runner.prepare_workflow(definition)
            times.append(time.perf_counter() - started)
        return statistics.median(times) * 1000

    return asyncio.run(measure())


def main(
    runs: Annotated[int, typer.Option(min=1, max=10_000, help="Instances made per cell.")] = 100,
) -> None:
    table = Table(title=f"a run's instance, median of {runs} (ms)")
    table.add_column("workflow")
    for name in RUNNERS:
        table.add_column(name, justify="right")
    for cls in WORKFLOWS:
        name = workflow._Definition.must_from_class(cls).name or cls.__name__
        cells = [f"{instance_ms(runner, cls, runs):.2f}" for runner in RUNNERS.values()]
        table.add_row(name, *cells)
    Console().print(table)


if __name__ == "__main__":
    typer.run(main)
