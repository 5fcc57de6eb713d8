"""`checkout-saga dlq`: the fan-out's dead letters: list them, redrive them.

A redrive delivers the event to its consumer again, the way it went the first time:

- a job (SendReceipt, ShipOrder) is started again as workflow `{job_id}:redrive-{n}` with
  the event (and memo `redrive`: n); a repeat of redrive n finds that workflow and starts nothing;
- a reaction (CustomerLoyalty, Analytics) gets the signal again, with start, at the workflow id
  the letter records (for Analytics, the shard that failed it, whatever the shard count is now);
  the workflow never remembered the event as handled, so it lets it through once.

Then the letter is marked REDRIVEN (n). Consumers are idempotent by event id, so redriving a
letter twice, or one whose consumer meanwhile succeeded, still sends one email.
"""

import asyncio
import json
import sys
from dataclasses import asdict, dataclass
from typing import Annotated

import httpx
import typer
from rich.console import Console
from rich.table import Table
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from activities.events import signal_with_start
from models.common import ServiceError
from models.deadletters import (
    ConsumerKind,
    DeadLetter,
    DeadLetterStatus,
    Delivery,
    MarkRedriven,
    redrive_workflow_id,
)
from worker.clients import connect_temporal, service_headers
from worker.settings import Settings
from workflows.fanout import REDRIVE_MEMO

dlq = typer.Typer(
    help="Dead letters of the fan-out: list them, redrive them.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
console = Console(width=None if sys.stdout.isatty() else 160)

UrlOption = Annotated[
    str | None,
    typer.Option("--url", help="Dead-letters service (default: CHECKOUT_DEADLETTERS_URL)."),
]

ConsumerOption = Annotated[
    str | None, typer.Option(help="Only this consumer's letters (receipt, shipping, ...).")
]


class DeadLetterError(RuntimeError):
    pass


@dataclass(frozen=True)
class RedriveOutcome:
    letter_id: str
    # redriven | skipped | failed
    outcome: str
    redrive: int
    workflow_id: str
    detail: str


def _base_url(url: str | None) -> str:
    return url or str(Settings().deadletters_url)


def _deadletters_client(url: str | None) -> httpx.AsyncClient:
    """The dead-letter service's client, with the services' bearer token (services.auth)."""
    return httpx.AsyncClient(
        base_url=_base_url(url), timeout=10, headers=service_headers(Settings())
    )


def _raise_for(response: httpx.Response) -> None:
    if response.status_code >= 400:
        try:
            error = ServiceError.model_validate_json(response.content)
            message = f"{error.code}: {error.message}"
        except ValueError:
            message = response.text[:300]
        raise DeadLetterError(f"{response.request.url} answered {response.status_code}: {message}")


async def list_letters(
    http: httpx.AsyncClient,
    status: DeadLetterStatus | None = None,
    consumer: str | None = None,
) -> list[DeadLetter]:
    params = {"status": status.value} if status else {}
    if consumer:
        params["consumer"] = consumer
    response = await http.get("/deadletters", params=params)
    _raise_for(response)
    return [DeadLetter.model_validate(item) for item in response.json()]


async def get_letter(http: httpx.AsyncClient, letter_id: str) -> DeadLetter:
    response = await http.get(f"/deadletters/{letter_id}")
    _raise_for(response)
    return DeadLetter.model_validate_json(response.content)


async def redrive_letter(
    client: Client, http: httpx.AsyncClient, letter: DeadLetter
) -> RedriveOutcome:
    """Deliver the letter's event to its consumer again (idempotent; see the module doc)."""
    target = letter.target
    if letter.status is DeadLetterStatus.REDRIVEN:
        return RedriveOutcome(
            letter.letter_id,
            "skipped",
            letter.redrives,
            "",
            f"already redriven (redrive {letter.redrives}); nothing sent again",
        )
    n = letter.redrives + 1
    try:
        workflow_id, detail = await _deliver_again(client, letter, n)
    except (RPCError, ValueError) as err:
        return RedriveOutcome(letter.letter_id, "failed", n, target.workflow_id, str(err))
    response = await http.post(
        f"/deadletters/{letter.letter_id}/redriven",
        json=MarkRedriven(redrive=n).model_dump(),
    )
    if response.status_code == 409:
        # The redrive ran and its consumer failed again already: the letter is OPEN anew.
        return RedriveOutcome(letter.letter_id, "failed", n, workflow_id, "failed again")
    _raise_for(response)
    return RedriveOutcome(letter.letter_id, "redriven", n, workflow_id, detail)


async def _deliver_again(client: Client, letter: DeadLetter, n: int) -> tuple[str, str]:
    target = letter.target
    if target.kind is ConsumerKind.SIGNAL:
        await signal_with_start(client, Delivery(target=target, event=letter.event))
        return target.workflow_id, f"signalled {target.signal} to {target.workflow_type}"
    workflow_id = redrive_workflow_id(target.workflow_id, n)
    try:
        await client.start_workflow(
            target.workflow_type,
            letter.event,
            id=workflow_id,
            task_queue=target.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            memo={REDRIVE_MEMO: n},
        )
    except WorkflowAlreadyStartedError:
        # An interrupted earlier attempt of this same redrive started it already.
        return workflow_id, f"{target.workflow_type} was already started for redrive {n}"
    return workflow_id, f"started {target.workflow_type}"


def _letters_table(letters: list[DeadLetter]) -> Table:
    table = Table(title=f"Dead letters ({len(letters)})", show_lines=True)
    for column in ("letter", "consumer", "kind", "status"):
        table.add_column(column, overflow="fold")
    for column in ("failures", "attempts", "redrives"):
        table.add_column(column, justify="right")
    table.add_column("last error", overflow="fold")
    table.add_column("last failed", overflow="fold")
    for letter in letters:
        style = "red" if letter.status is DeadLetterStatus.OPEN else "green"
        table.add_row(
            letter.letter_id,
            letter.consumer,
            letter.target.kind.value,
            f"[{style}]{letter.status.value}[/{style}]",
            str(letter.failures),
            str(letter.attempts),
            str(letter.redrives),
            letter.error[:200],
            letter.last_failed_at,
        )
    return table


@dlq.command("list")
def list_command(
    status: Annotated[
        DeadLetterStatus | None, typer.Option(help="Only letters in this status.")
    ] = None,
    consumer: ConsumerOption = None,
    url: UrlOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Show the dead letters: which event, which consumer, why, how often."""

    async def fetch() -> list[DeadLetter]:
        async with _deadletters_client(url) as http:
            return await list_letters(http, status, consumer)

    try:
        letters = asyncio.run(fetch())
    except (DeadLetterError, httpx.HTTPError, RuntimeError) as err:
        console.print(f"[red]Could not read the dead letters: {err}[/red]")
        raise typer.Exit(1) from err
    if as_json:
        for letter in letters:
            print(letter.model_dump_json())
    else:
        console.print(_letters_table(letters))


@dlq.command()
def redrive(
    letter_id: Annotated[str | None, typer.Argument(help="The letter to redrive.")] = None,
    all_open: Annotated[bool, typer.Option("--all", help="Redrive every OPEN letter.")] = False,
    consumer: ConsumerOption = None,
    url: UrlOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Deliver dead-lettered events to their consumers again (LETTER_ID, or --all OPEN ones,
    of one --consumer if given)."""
    if (letter_id is None) == (not all_open):
        console.print("[red]Give a LETTER_ID or --all (one of them).[/red]")
        raise typer.Exit(2)

    async def run() -> list[RedriveOutcome]:
        client = await connect_temporal()
        async with _deadletters_client(url) as http:
            if letter_id is not None:
                letters = [await get_letter(http, letter_id)]
            else:
                letters = await list_letters(http, DeadLetterStatus.OPEN, consumer)
            return [await redrive_letter(client, http, letter) for letter in letters]

    try:
        outcomes = asyncio.run(run())
    except (DeadLetterError, httpx.HTTPError, RuntimeError) as err:
        console.print(f"[red]Redrive failed: {err}[/red]")
        raise typer.Exit(1) from err
    if as_json:
        for outcome in outcomes:
            print(json.dumps(asdict(outcome)))
    else:
        table = Table(title=f"Redriven ({len(outcomes)})")
        for column in ("letter", "outcome", "redrive", "workflow", "detail"):
            table.add_column(column, overflow="fold")
        for outcome in outcomes:
            table.add_row(
                outcome.letter_id,
                outcome.outcome,
                str(outcome.redrive),
                outcome.workflow_id,
                outcome.detail,
            )
        console.print(table)
    if any(outcome.outcome == "failed" for outcome in outcomes):
        raise typer.Exit(1)
