"""`checkout-saga reconcile`: one sweep of the engine's reconciler, now, and what it did."""

import asyncio
import signal
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from temporal_saga.client import NoSweepWorker, sweep_now
from temporal_saga.models import ResetOutcome, SweepAction, SweepEntry, SweepReport
from worker.clients import connect_temporal
from worker.settings import Settings
from workflows.checkout_sweep import checkout_sweep

console = Console(width=None if sys.stdout.isatty() else 160)
errors = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


def reconcile(
    saga_type: Annotated[
        str | None,
        typer.Option(
            help="Sweep only this saga type (its workflow type); default: every saga type."
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option(help="Say what would be repaired or reset; change nothing.")
    ] = False,
    older_than: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Records opened longer ago than this many seconds, for the sagas with a "
            "finder of their own (default: CHECKOUT_RECONCILE_OLDER_THAN_SECONDS).",
        ),
    ] = None,
    wait: Annotated[
        int,
        typer.Option(
            min=0, max=3600, help="Seconds to wait for the repairs started and the runs reset."
        ),
    ] = 60,
    task_queue: Annotated[
        str | None,
        typer.Option(
            help="The task queue of a worker that runs the engine's sweep (any worker made by "
            "saga_worker); default: CHECKOUT_TASK_QUEUE, the checkout's workers."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The sweep's report as JSON.")] = False,
) -> None:
    """Find sagas whose run ended without settling (terminated, timed out, failed, reset away
    from) and settle them, as the scheduled sweep does: the checkout by its finder and
    repair, every other saga type by a reset of its ended run, then a cancellation (it
    compensates before the pivot, goes on after it). A saga whose run is still running is
    never touched. Fails within seconds when no worker runs the sweep; stopped (Ctrl-C,
    SIGTERM), it terminates the sweep it started."""
    settings = Settings()
    try:
        request = checkout_sweep(
            settings, dry_run, older_than_seconds=older_than, wait_seconds=wait, saga_type=saga_type
        )
    except ValueError as err:  # pydantic's, naming the field
        errors.print(f"[red]{escape(str(err))}[/red]")
        raise typer.Exit(2) from err

    queue = task_queue or settings.task_queue

    async def sweep() -> SweepReport:
        # SIGTERM as Ctrl-C: the sweep started is terminated on the way out (sweep_now).
        main = asyncio.current_task()
        assert main is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main.cancel)
        return await sweep_now(await connect_temporal(), request, queue)

    try:
        report = asyncio.run(sweep())
    except NoSweepWorker as err:
        which = "--task-queue" if task_queue else "CHECKOUT_TASK_QUEUE (or --task-queue)"
        errors.print(f"[red]{escape(str(err))}[/red] (the task queue comes from {which})")
        raise typer.Exit(1) from err
    except (KeyboardInterrupt, asyncio.CancelledError) as err:
        errors.print("[red]interrupted: the sweep it started was terminated[/red]")
        raise typer.Exit(130) from err
    if as_json:
        print(report.model_dump_json())
        return
    console.print(report_table(report))


def report_table(report: SweepReport) -> Table:
    repaired, reset = (
        (SweepAction.WOULD_REPAIR, SweepAction.WOULD_RESET)
        if report.dry_run
        else (SweepAction.REPAIRED, SweepAction.RESET)
    )
    would = "would be " if report.dry_run else ""
    table = Table(
        title=f"Sweep of {report.saga_type or 'every saga type'} (records opened before "
        f"{report.before:%Y-%m-%d %H:%M:%S} UTC): {len(report.entries)} saga(s), "
        f"{report.count(repaired)} {would}repaired, {report.count(reset)} {would}reset"
    )
    # The workflow id and the outcome whole: an operator copies the id into the next command
    # and reads the outcome as one line.
    table.add_column("workflow id", no_wrap=True)
    for column in ("saga type", "latest run", "open records", "action"):
        table.add_column(column, overflow="fold")
    table.add_column("outcome", no_wrap=True)
    for entry in report.entries:
        table.add_row(
            entry.workflow_id,
            entry.saga_type or "",
            entry.run_status.value,
            "\n".join(entry.records),
            entry.action.value,
            outcome(entry),
        )
    return table


def outcome(entry: SweepEntry) -> str:
    """What became of the saga: by its own repair, or by the sweep's reset."""
    if entry.repair is not None:
        return f"own repair → {entry.repair.outcome}: {' → '.join(entry.repair.actions)}"
    reset = entry.reset
    if reset is None:
        return entry.repair_workflow_id or ""
    if reset.outcome is ResetOutcome.NOT_RESET:
        return f"not reset: {reset.detail}"
    words = f"reset+cancelled → {reset.outcome.value.replace('_', ' ')}"
    if reset.outcome is ResetOutcome.COMPENSATED:
        return f"{words}: {' → '.join(reset.compensations_done) or 'nothing to undo'}"
    if reset.outcome is ResetOutcome.FAILED_AGAIN:
        return f"{words}: {reset.detail}"
    if reset.outcome is ResetOutcome.STILL_RUNNING:
        return f"{words} (run {reset.run_id})"
    return words
