"""`checkout-saga reconcile`: one sweep of the checkout's reconciler, now, and what it did."""

import asyncio
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from temporal_saga.client import sweep_now
from temporal_saga.models import SweepAction, SweepReport
from worker.clients import connect_temporal
from worker.runner import checkout_sweep
from worker.settings import Settings

console = Console(width=None if sys.stdout.isatty() else 160)


def reconcile(
    dry_run: Annotated[
        bool, typer.Option(help="Say what would be repaired; change nothing.")
    ] = False,
    older_than: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Records opened longer ago than this many seconds "
            "(default: CHECKOUT_RECONCILE_OLDER_THAN_SECONDS).",
        ),
    ] = None,
    wait: Annotated[
        int, typer.Option(min=0, max=3600, help="Seconds to wait for the repairs started.")
    ] = 60,
    as_json: Annotated[bool, typer.Option("--json", help="The sweep's report as JSON.")] = False,
) -> None:
    """Find checkouts whose run ended without settling their records (terminated, timed out,
    failed, reset away from) and settle them, as the scheduled sweep does. A checkout whose
    run is still running is never touched."""
    settings = Settings()
    request = checkout_sweep(settings, dry_run, older_than_seconds=older_than, wait_seconds=wait)

    async def sweep() -> SweepReport:
        return await sweep_now(await connect_temporal(), request, settings.task_queue)

    report = asyncio.run(sweep())
    if as_json:
        print(report.model_dump_json())
        return
    console.print(report_table(report))


def report_table(report: SweepReport) -> Table:
    verb = "would repair" if report.dry_run else "repaired"
    done = report.count(SweepAction.WOULD_REPAIR if report.dry_run else SweepAction.REPAIRED)
    table = Table(
        title=f"Sweep of records opened before {report.before:%Y-%m-%d %H:%M:%S} UTC: "
        f"{len(report.entries)} saga(s) with open records, {done} {verb}"
    )
    for column in ("workflow id", "latest run", "open records", "action"):
        table.add_column(column, overflow="fold")
    table.add_column("repair", no_wrap=True)
    for entry in report.entries:
        repair = entry.repair
        table.add_row(
            entry.workflow_id,
            entry.run_status.value,
            "\n".join(entry.records),
            entry.action.value,
            f"{repair.outcome}: {' → '.join(repair.actions)}"
            if repair
            else (entry.repair_workflow_id or ""),
        )
    return table
