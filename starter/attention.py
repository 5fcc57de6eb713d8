"""`checkout-saga attention list|retry|skip`: checkouts whose compensation needs a person."""

import asyncio
import json
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from models.checkout import CheckoutProgress, CheckoutResult, SkipCompensation
from starter.checkouts import checkout_handle
from worker.clients import connect_temporal
from workflows.checkout import CheckoutWorkflow

attention = typer.Typer(
    help="Checkouts whose compensation is stuck (NEEDS_ATTENTION): list, retry, skip.",
    no_args_is_help=True,
)
# Wide when piped, so order ids stay whole in logs and scripts.
console = Console(width=None if sys.stdout.isatty() else 160)
QUERY = "WorkflowType = 'Checkout' AND SagaStatus = 'NEEDS_ATTENTION'"


async def stuck_checkouts(client: Client, limit: int) -> list[CheckoutProgress]:
    found = []
    async for execution in client.list_workflows(QUERY, limit=limit):
        handle: WorkflowHandle[CheckoutWorkflow, CheckoutResult] = client.get_workflow_handle_for(
            CheckoutWorkflow.run, execution.id
        )
        found.append(await handle.query(CheckoutWorkflow.status))
    return found


@attention.command("list")
def list_stuck(
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Show every checkout waiting for an operator, with the stuck compensation's error."""

    async def run() -> list[CheckoutProgress]:
        return await stuck_checkouts(await connect_temporal(), limit)

    stuck = asyncio.run(run())
    if as_json:
        for progress in stuck:
            print(json.dumps(progress.model_dump(mode="json")))
        return
    table = Table(title=f"{len(stuck)} checkout(s) need attention")
    for column in ("order", "decision", "stuck", "attempts"):
        table.add_column(column, no_wrap=True)
    table.add_column("last error")
    for progress in stuck:
        for report in progress.compensations:
            if report.name in progress.stuck:
                decision = progress.decision.reason_code if progress.decision else ""
                table.add_row(
                    progress.order_id,
                    f"REJECTED ({decision})",
                    report.name,
                    str(report.attempts),
                    report.last_error or "",
                )
    console.print(table)


async def _resolve(order_id: str, action: str, name: str | None, reason: str | None) -> str:
    handle = await checkout_handle(order_id)
    if action == "retry":
        return await handle.execute_update(CheckoutWorkflow.retry_compensation, name)
    assert reason is not None
    return await handle.execute_update(
        CheckoutWorkflow.skip_compensation, SkipCompensation(reason=reason, name=name)
    )


def _run_resolution(order_id: str, action: str, name: str | None, reason: str | None) -> None:
    try:
        resolved = asyncio.run(_resolve(order_id, action, name, reason))
    except WorkflowUpdateFailedError as err:
        console.print(f"[red]{order_id}: {err.cause}[/red]")
        raise typer.Exit(1) from err
    except RPCError as err:
        if err.status is RPCStatusCode.NOT_FOUND:
            console.print(f"[red]no running checkout for order {order_id}[/red]")
            raise typer.Exit(1) from err
        raise
    verb = "retrying" if action == "retry" else "skipped"
    console.print(f"{order_id}: {verb} {resolved}")


@attention.command()
def retry(
    order_id: Annotated[str, typer.Argument(help="The order whose checkout is stuck.")],
    compensation: Annotated[
        str | None, typer.Option(help="Which one, when several are stuck.")
    ] = None,
) -> None:
    """Try the stuck compensation again (after fixing what made it fail)."""
    _run_resolution(order_id, "retry", compensation, None)


@attention.command()
def skip(
    order_id: Annotated[str, typer.Argument(help="The order whose checkout is stuck.")],
    reason: Annotated[str, typer.Option(help="Why; recorded in the checkout's result.")],
    compensation: Annotated[
        str | None, typer.Option(help="Which one, when several are stuck.")
    ] = None,
) -> None:
    """Give up on the stuck compensation (it was done by hand, or cannot be done)."""
    if not reason.strip():
        raise typer.BadParameter("a reason is required", param_hint="--reason")
    _run_resolution(order_id, "skip", compensation, reason)
