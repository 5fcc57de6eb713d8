"""`checkout-saga attention list|retry|skip`: sagas of any type whose compensation needs a
person, found by the engine's `SagaStatus` search attribute."""

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from models.checkout import checkout_workflow_id
from temporal_saga.client import (
    QUERY_CONCURRENCY,
    QUERY_TIMEOUT,
    Stuck,
    needing_attention,
    retry_compensation,
    skip_compensation,
)
from worker.clients import connect_temporal

attention = typer.Typer(
    help="Sagas whose compensation is stuck (NEEDS_ATTENTION): list, retry, skip.",
    no_args_is_help=True,
)
# Wide when piped, so ids stay whole in logs and scripts.
console = Console(width=None if sys.stdout.isatty() else 160)

OrderIdArgument = Annotated[
    str | None, typer.Argument(help="The order of a checkout (or give --workflow-id).")
]
WorkflowIdOption = Annotated[
    str | None, typer.Option(help="The saga's workflow id, of any saga type.")
]
CompensationOption = Annotated[
    str | None, typer.Option(help="Which compensation, when several are stuck.")
]
QUERY_SECONDS = QUERY_TIMEOUT.total_seconds()
QueryTimeoutOption = Annotated[
    float,
    typer.Option(
        min=0.1,
        max=300,
        help="Seconds a saga's status query may take (one whose worker is gone answers nothing).",
    ),
]


def saga_workflow_id(order_id: str | None, workflow_id: str | None) -> str:
    """The workflow id a command means: --workflow-id, or the checkout of ORDER_ID."""
    if (order_id is None) == (workflow_id is None):
        raise typer.BadParameter("give an ORDER_ID or --workflow-id (one of them)")
    return workflow_id if workflow_id is not None else checkout_workflow_id(order_id or "")


@attention.command("list")
def list_stuck(
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    query_timeout: QueryTimeoutOption = QUERY_SECONDS,
    concurrency: Annotated[
        int, typer.Option(min=1, max=100, help="Status queries at once.")
    ] = QUERY_CONCURRENCY,
) -> None:
    """Show every saga waiting for an operator, with the stuck compensation's error.

    A saga whose status query goes unanswered (no worker of its type, a query that fails)
    is listed with the error instead, after the others; the command then exits 1."""

    async def find() -> list[Stuck]:
        return await needing_attention(
            await connect_temporal(),
            limit,
            concurrency=concurrency,
            query_timeout=timedelta(seconds=query_timeout),
        )

    stuck = asyncio.run(find())
    unread = [found for found in stuck if found.progress is None]
    if as_json:
        for found in stuck:
            line: dict[str, object] = {
                "workflow_id": found.workflow_id,
                "workflow_type": found.workflow_type,
                "error": found.error,
            }
            if found.progress is not None:
                line.update(found.progress.model_dump(mode="json"))
            print(json.dumps(line))
    else:
        console.print(_stuck_table(stuck))
    if unread:
        print(
            f"{len(unread)} saga(s) in NEEDS_ATTENTION whose status could not be read: "
            + ", ".join(found.workflow_id for found in unread),
            file=sys.stderr,
        )
        raise typer.Exit(1)


def _stuck_table(stuck: list[Stuck]) -> Table:
    """One row per stuck compensation; one per saga whose status could not be read."""
    table = Table(title=f"{len(stuck)} saga(s) need attention")
    for column in ("workflow id", "type", "decision", "stuck", "attempts"):
        table.add_column(column, no_wrap=True)
    table.add_column("last error")
    for found in stuck:
        progress = found.progress
        if progress is None:
            error = f"status unreadable: {found.error}"
            table.add_row(found.workflow_id, found.workflow_type, "?", "?", "", escape(error))
            continue
        decision = progress.decision
        for report in progress.compensations:
            if report.name in progress.stuck:
                table.add_row(
                    found.workflow_id,
                    found.workflow_type,
                    f"{decision.status} ({decision.reason_code})" if decision else "",
                    report.name,
                    str(report.attempts),
                    escape(report.last_error or ""),
                )
    return table


def _resolve(workflow_id: str, send: Callable[[Client], Awaitable[str]], verb: str) -> None:
    async def run() -> str:
        return await send(await connect_temporal())

    try:
        resolved = asyncio.run(run())
    except WorkflowUpdateFailedError as err:
        console.print(f"[red]{workflow_id}: {err.cause}[/red]")
        raise typer.Exit(1) from err
    except RPCError as err:
        if err.status is RPCStatusCode.NOT_FOUND:
            console.print(f"[red]no running saga {workflow_id}[/red]")
            raise typer.Exit(1) from err
        raise
    console.print(f"{workflow_id}: {verb} {resolved}")


@attention.command()
def retry(
    order_id: OrderIdArgument = None,
    workflow_id: WorkflowIdOption = None,
    compensation: CompensationOption = None,
) -> None:
    """Try the stuck compensation again (after fixing what made it fail)."""
    target = saga_workflow_id(order_id, workflow_id)
    _resolve(target, lambda client: retry_compensation(client, target, compensation), "retrying")


@attention.command()
def skip(
    reason: Annotated[str, typer.Option(help="Why; recorded in the saga's result.")],
    order_id: OrderIdArgument = None,
    workflow_id: WorkflowIdOption = None,
    compensation: CompensationOption = None,
) -> None:
    """Give up on the stuck compensation (it was done by hand, or cannot be done)."""
    if not reason.strip():
        raise typer.BadParameter("a reason is required", param_hint="--reason")
    target = saga_workflow_id(order_id, workflow_id)
    _resolve(
        target,
        lambda client: skip_compensation(client, target, reason, compensation),
        "skipped",
    )
