"""`checkout-saga`: run the demo, place checkouts, run a worker."""

import asyncio
import json
import os
import random
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import httpx
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table
from temporalio.client import WorkflowQueryFailedError, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from models.checkout import CheckoutDetails, CheckoutRequest, CheckoutResult
from models.payments import CARD_OK, NewPaymentMethod
from stack.launcher import LaunchError, Stack, running_stack, write_env_file
from starter.attention import (
    QUERY_SECONDS,
    OrderIdArgument,
    QueryTimeoutOption,
    WorkflowIdOption,
    attention,
    saga_workflow_id,
)
from starter.checkouts import (
    decide_checkout,
    demo_scenarios,
    describe_validation_error,
    place_checkout,
    place_many,
    random_request,
)
from starter.describe import describe_command
from starter.dlq import dlq
from starter.payment_methods import (
    PublishableKeyMissing,
    TokenizeRefused,
    publishable_key,
    tokenize_card,
    tokenize_test_cards,
)
from starter.reactions import reactions_table, wait_for_reactions
from starter.reconcile import reconcile
from starter.replay import replay_command
from telemetry.tracing import configure_tracing
from temporal_saga.client import cancel as cancel_saga
from temporal_saga.client import status as saga_status
from temporal_saga.models import Outcome, SagaProgress, SagaResult
from worker.clients import connect_temporal
from worker.settings import Settings

app = typer.Typer(
    help="Checkout saga on Temporal: demo, checkouts and worker.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
# Wide when piped, so tables stay readable in logs and CI.
console = Console(width=None if sys.stdout.isatty() else 160)


def _result_row(label: str, order_id: str, result: CheckoutResult, seconds: float) -> list[str]:
    status = result.status.value
    style = "green" if result.status is Outcome.CONFIRMED else "red"
    return [
        order_id,
        label,
        f"[{style}]{status}[/{style}]",
        result.failed_step.value if result.failed_step else "",
        result.reason or "",
        " → ".join(result.compensations_done) or "-",
        f"{seconds:.2f}",
    ]


def _outcomes_table() -> Table:
    table = Table(title="Checkouts", show_lines=True)
    for column in ("order", "scenario", "outcome", "failed step", "reason"):
        table.add_column(column)
    table.add_column("compensations (in order)", no_wrap=True)
    table.add_column("seconds", justify="right")
    return table


async def _run_scenarios(stack: Stack, run_id: str) -> tuple[Table, Table]:
    client = await connect_temporal({**os.environ, **stack.env})
    task_queue = Settings().task_queue
    # As a shop's front end: each test card tokenized once, the checkouts carry the tokens.
    cards = await tokenize_test_cards(stack.service_urls["payments"], stack.publishable_key)
    scenarios = demo_scenarios(run_id, cards)

    async def timed(request: CheckoutRequest) -> tuple[CheckoutResult, float]:
        started = time.monotonic()
        result = await place_checkout(client, request, task_queue)
        return result, time.monotonic() - started

    runs = [s for s in scenarios if s.request is not None]
    results = await asyncio.gather(*(timed(s.request) for s in runs if s.request is not None))
    table = _outcomes_table()
    for scenario, (result, seconds) in zip(runs, results, strict=True):
        table.add_row(*_result_row(scenario.label, result.order_id, result, seconds))
    for scenario in scenarios:
        if scenario.request is None:
            reason = f"refused before any side effect: {scenario.invalid}"
            table.add_row("-", scenario.label, "[yellow]INVALID[/yellow]", "", reason, "-", "")
    reactions = await wait_for_reactions(
        stack.service_urls,
        [
            (result, s.request.customer_id)
            for s, (result, _) in zip(runs, results, strict=True)
            if s.request is not None
        ],
        headers=stack.service_headers,
    )
    return table, reactions_table(reactions)


@app.command()
def demo(
    once: Annotated[bool, typer.Option(help="Run the mix, print, stop everything.")] = False,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Where the SQLite files and logs go (default: a new temp dir)."),
    ] = None,
) -> None:
    """Start Temporal (with its Web UI), the services and a worker; run a mix of checkouts."""
    directory = data_dir or Path(tempfile.mkdtemp(prefix="checkout-saga-demo-"))
    console.print(f"Data and logs: {directory}")
    try:
        with running_stack(directory) as stack:
            console.print(f"Temporal at {stack.temporal_address}; services: {stack.service_urls}")
            table, fanout = asyncio.run(_run_scenarios(stack, uuid.uuid4().hex[:8]))
            console.print(table)
            console.print(fanout)
            console.print(f"Temporal Web UI: {stack.ui_url}/namespaces/default/workflows")
            for proc in stack.processes:
                if proc.name.startswith("worker-") and proc.address:
                    console.print(f"Metrics of {proc.name}: {proc.address}")
            if stack.codec_notice:
                # Said loudly: this one decrypts for anyone on the machine (dev only).
                notice = escape(stack.codec_notice)
                console.print(f"Payloads are encrypted. [bold]{notice}[/bold]")
            console.print(f"To talk to it from another shell: source {write_env_file(stack)}")
            if once:
                return
            console.print("Running; Ctrl-C (or SIGTERM) stops every process started here.")
            try:
                while all(p.alive() for p in stack.processes):
                    time.sleep(0.5)
                dead = [p.name for p in stack.processes if not p.alive()]
                console.print(f"[red]Stopped: {', '.join(dead)} exited.[/red]")
                raise typer.Exit(1)
            except KeyboardInterrupt:
                console.print("Stopping…")
    except LaunchError as err:
        console.print(f"[red]Could not start the demo: {err}[/red]")
        raise typer.Exit(1) from err


def _parse_item(text: str) -> dict[str, object]:
    parts = text.split(":")
    if len(parts) != 2:
        # The old SKU:QUANTITY:PRICE is refused, not half-read: the shop sets prices.
        raise typer.BadParameter(f"{text!r}: expected SKU:QUANTITY (prices are the shop's)")
    sku, quantity = parts
    try:
        return {"sku": sku, "quantity": int(quantity)}
    except ValueError as err:
        raise typer.BadParameter(f"{text!r}: the quantity must be an integer") from err


@app.command()
def checkout(
    item: Annotated[list[str], typer.Option("--item", help="SKU:QUANTITY, repeatable.")],
    email: Annotated[str, typer.Option(help="Receipt address.")],
    customer: Annotated[str, typer.Option(help="Customer id.")] = "customer-1",
    card: Annotated[
        str,
        typer.Option(
            help="Card number: tokenized with the payments service first (as a shop's front "
            "end would, with CHECKOUT_PAYMENTS_PUBLISHABLE_KEY); the checkout carries the token."
        ),
    ] = CARD_OK,
    currency: Annotated[str, typer.Option(help="ISO 4217 code.")] = "EUR",
    expected_total: Annotated[
        int | None,
        typer.Option(
            help="The total the customer saw, in cents: refused (price_changed) if the "
            "shop's total differs."
        ),
    ] = None,
    order_id: Annotated[str | None, typer.Option(help="Default: a new id.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Place one checkout against running parts; prints the decision as soon as it is known.

    The card is tokenized first (the payments service's POST /payment-methods); the checkout
    carries only the token. What follows the decision (committing stock, compensations) goes
    on in the background.
    """
    details: dict[str, object] = {
        "order_id": order_id or f"order-{uuid.uuid4().hex[:12]}",
        "customer_id": customer,
        "email": email,
        "currency": currency,
        "items": [_parse_item(text) for text in item],
        "expected_total_cents": expected_total,
    }
    # Everything checked before anything is sent: the card is not tokenized for a bad cart.
    problems = []
    for model, fields in ((CheckoutDetails, details), (NewPaymentMethod, {"card_number": card})):
        try:
            model.model_validate(fields)
        except ValidationError as err:
            problems.append(describe_validation_error(err))
    if problems:
        console.print(f"[red]Invalid checkout: {'; '.join(problems)}[/red]")
        raise typer.Exit(2)
    settings = Settings()

    async def place() -> CheckoutResult:
        method = await tokenize_card(str(settings.payments_url), publishable_key(settings), card)
        request = CheckoutRequest.model_validate({**details, "payment_token": method.token})
        client = await connect_temporal()
        decision, _handle = await decide_checkout(client, request, settings.task_queue)
        return decision

    started = time.monotonic()
    try:
        result = asyncio.run(place())
    except (PublishableKeyMissing, TokenizeRefused) as err:
        console.print(f"[red]Invalid checkout: {err}[/red]")
        raise typer.Exit(2) from err
    except httpx.HTTPError as err:
        console.print(f"[red]Could not tokenize the card: {type(err).__name__} {err}[/red]")
        raise typer.Exit(1) from err
    seconds = time.monotonic() - started
    if as_json:
        print(result.model_dump_json())
    else:
        table = _outcomes_table()
        table.add_row(*_result_row("checkout", result.order_id, result, seconds))
        console.print(table)
    if result.status is not Outcome.CONFIRMED:
        raise typer.Exit(1)


@app.command()
def run(
    count: Annotated[int, typer.Option(min=1, max=100_000, help="How many checkouts.")] = 20,
    concurrency: Annotated[int, typer.Option(min=1, max=1000, help="At once.")] = 20,
    seed: Annotated[int, typer.Option(help="Seed of the mix of carts and cards.")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON summary line.")] = False,
) -> None:
    """Place COUNT checkouts from a seeded mix against running parts; summarise outcomes."""
    rng = random.Random(seed)
    batch = uuid.uuid4().hex[:8]
    settings = Settings()
    try:
        key = publishable_key(settings)
    except PublishableKeyMissing as err:
        console.print(f"[red]{err}[/red]")
        raise typer.Exit(2) from err

    async def place_all() -> None:
        # As a shop's front end: each test card tokenized once, the checkouts carry tokens.
        cards = await tokenize_test_cards(str(settings.payments_url), key)
        requests = [random_request(rng, f"run-{batch}-{i}", cards) for i in range(count)]
        client = await connect_temporal()
        task_queue = settings.task_queue
        with Progress(console=Console(stderr=True), disable=as_json) as progress:
            task = progress.add_task("checkouts", total=count)
            summary = await place_many(
                client,
                requests,
                task_queue,
                concurrency,
                on_done=lambda: progress.advance(task),
            )
        figures = {
            "count": summary.count,
            "seconds": round(summary.seconds, 3),
            "per_second": round(summary.count / summary.seconds, 2),
            "outcomes": dict(sorted(summary.outcomes.items())),
        }
        if as_json:
            print(json.dumps(figures))
        else:
            table = Table(title=f"{count} checkouts in {summary.seconds:.1f} s")
            table.add_column("outcome")
            table.add_column("count", justify="right")
            for outcome, n in sorted(summary.outcomes.items()):
                table.add_row(outcome, str(n))
            console.print(table)
        for error in summary.errors[:10]:
            console.print(f"[red]{error}[/red]")
        if summary.errors:
            raise typer.Exit(1)

    asyncio.run(place_all())


@app.command()
def worker() -> None:
    """Run a worker (same as `python -m worker`): settings from the environment."""
    from telemetry.logs import configure_logging
    from worker.runner import run_worker

    configure_logging()
    asyncio.run(run_worker())


@app.command("codec-server")
def codec_server(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8081,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    ui_origin: Annotated[
        list[str] | None,
        typer.Option(help="A Web UI origin allowed to call it (repeatable; default :8233)."),
    ] = None,
) -> None:
    """Decode (and encode) payloads for the Temporal Web UI with SAGA_CODEC_KEYS.

    Callers need CHECKOUT_CODEC_AUTH_TOKEN and/or a JWT of CHECKOUT_CODEC_JWKS_URL once one is
    set (worker/codec_auth.py); with neither, anyone who reaches it can decrypt."""
    from worker.codec_server import main as serve_codec

    args = ["--host", host, "--port", str(port)]
    for origin in ui_origin or []:
        args += ["--ui-origin", origin]
    serve_codec(args)


app.command("replay")(replay_command)
app.command("reconcile")(reconcile)
app.command("describe")(describe_command)


@app.command()
def status(
    order_id: OrderIdArgument = None,
    workflow_id: WorkflowIdOption = None,
    query_timeout: QueryTimeoutOption = QUERY_SECONDS,
) -> None:
    """Where a saga is: status, current step, steps done, compensations, and how its latest
    run stands (run_status; for one that ended without finishing, its repair), as JSON."""
    target = saga_workflow_id(order_id, workflow_id)

    async def query() -> SagaProgress[SagaResult]:
        return await saga_status(
            await connect_temporal(),
            target,
            SagaProgress[SagaResult],
            query_timeout=timedelta(seconds=query_timeout),
        )

    try:
        print(asyncio.run(query()).model_dump_json(indent=2))
    except RPCError as err:
        if err.status is RPCStatusCode.NOT_FOUND:
            console.print(f"[red]no saga {target}: {err.message}[/red]")
        else:
            unanswered = escape(f"{target}: no answer to its status query: {err.message}")
            console.print(f"[red]{unanswered}[/red]")
        raise typer.Exit(1) from err
    except WorkflowQueryFailedError as err:
        console.print(f"[red]{escape(f'{target}: its status query failed: {err.message}')}[/red]")
        raise typer.Exit(1) from err


@app.command()
def cancel(
    order_id: OrderIdArgument = None,
    workflow_id: WorkflowIdOption = None,
    reason: Annotated[str, typer.Option(help="Why, in the customer's words.")] = (
        "cancelled by the customer"
    ),
) -> None:
    """Cancel a saga before its pivot; prints the answer (REJECTED, cancelled)."""
    target = saga_workflow_id(order_id, workflow_id)

    async def send() -> SagaResult:
        return await cancel_saga(await connect_temporal(), target, reason, SagaResult)

    try:
        print(asyncio.run(send()).model_dump_json())
    except WorkflowUpdateFailedError as err:
        console.print(f"[red]{target}: {err.cause}[/red]")
        raise typer.Exit(1) from err
    except RPCError as err:
        console.print(f"[red]no running saga {target}: {err.message}[/red]")
        raise typer.Exit(1) from err


app.add_typer(attention, name="attention")
app.add_typer(dlq, name="dlq")


def main() -> None:
    code: int | str | None = 0
    # With CHECKOUT_TRACING on, a checkout started here is the root of its trace (its client
    # picks the provider up: worker.clients); `worker` sets up its own.
    tracing = None if sys.argv[1:2] == ["worker"] else configure_tracing("checkout-starter")
    try:
        app()
    except SystemExit as exit_:
        code = exit_.code
    if tracing is not None:
        tracing.shutdown()  # send the last spans
    sys.stdout.flush()
    sys.stderr.flush()
    # temporalio can abort at interpreter exit (sdk-python #300): leave without finalizers.
    os._exit(code if isinstance(code, int) else 1)
