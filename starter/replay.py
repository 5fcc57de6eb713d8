"""Replay recorded workflow histories against the current workflow code.

A history that no longer replays means the code changed in a way the running (or recorded)
checkouts cannot follow: deploying it would break them with a non-determinism error. Used by
`checkout-saga replay --query ...` (histories from a live server), by the replay of recorded
history files, and by tests/checkout/test_replay.py.
"""

import asyncio
import json
import re
import sys
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from google.protobuf import json_format
from rich.console import Console
from rich.table import Table
from temporalio.client import Client, WorkflowHistory
from temporalio.service import RPCError
from temporalio.worker import Replayer

from temporal_saga.codec import data_converter
from worker.clients import connect_temporal
from worker.runner import WORKFLOWS


@dataclass(frozen=True)
class ReplayOutcome:
    """One replayed history: where it came from and the failure, if any."""

    source: str  # the file, or "server"
    workflow_id: str
    run_id: str
    workflow_type: str
    events: int
    error: Exception | None

    @property
    def ok(self) -> bool:
        return self.error is None


def replayer(workflows: Sequence[type] | None = None) -> Replayer:
    """The worker's workflows and data converter: what a deploy of this code would run.

    Encrypted histories need the keys of SAGA_CODEC_KEYS; histories in clear (recorded
    before encryption) replay with or without them."""
    return Replayer(
        workflows=list(WORKFLOWS if workflows is None else workflows),
        data_converter=data_converter(),
    )


def workflow_type(history: WorkflowHistory) -> str:
    started = history.events[0].workflow_execution_started_event_attributes
    return started.workflow_type.name


class HistoryFileError(ValueError):
    """A file that is not a workflow history."""


def load_history(path: Path) -> WorkflowHistory:
    """A history file (`fetch_history().to_json()` or `temporal workflow show -o json`).

    The JSON holds no workflow id of its own apart from the start event's `workflowId`
    (servers since 1.21 fill it in); without it, the file's name stands in.
    """
    try:
        text = path.read_text()
        document = json.loads(text)
        events = document.get("events") if isinstance(document, dict) else None
        if not isinstance(events, list) or not events or not isinstance(events[0], dict):
            raise HistoryFileError("no events")
        started = events[0].get("workflowExecutionStartedEventAttributes")
        if not isinstance(started, dict):
            raise HistoryFileError("the first event is not the workflow's start")
        workflow_id = started.get("workflowId") or path.stem
        return WorkflowHistory.from_json(str(workflow_id), document)
    except (OSError, ValueError, json_format.Error) as err:
        raise HistoryFileError(f"{path}: {err}") from err


def history_files(directory: Path) -> list[Path]:
    """The *.json files of a directory and its sub-directories, in path order.

    Sub-directories keep the histories recorded before a change for as long as checkouts
    that started before it may still be running (docs/versioning.md).
    """
    return sorted(p for p in directory.rglob("*.json") if p.is_file())


async def replay(
    histories: AsyncIterator[tuple[str, WorkflowHistory]],
    workflows: Sequence[type] | None = None,
) -> list[ReplayOutcome]:
    """Replay every history; a failure is reported in its outcome, never raised.

    Each item is (source, history). The histories are replayed by one Replayer in one go
    (`replay_workflows`), and its failures, keyed by run id, are matched back to them.
    """
    seen: list[tuple[str, WorkflowHistory]] = []

    async def recorded() -> AsyncIterator[WorkflowHistory]:
        async for source, history in histories:
            seen.append((source, history))
            yield history

    results = await replayer(workflows).replay_workflows(recorded(), raise_on_replay_failure=False)
    return [
        ReplayOutcome(
            source=source,
            workflow_id=history.workflow_id,
            run_id=history.run_id,
            workflow_type=workflow_type(history),
            events=len(history.events),
            error=results.replay_failures.get(history.run_id),
        )
        for source, history in seen
    ]


async def replay_files(
    paths: Iterable[Path], workflows: Sequence[type] | None = None
) -> list[ReplayOutcome]:
    async def histories() -> AsyncIterator[tuple[str, WorkflowHistory]]:
        for path in paths:
            yield str(path), load_history(path)

    return await replay(histories(), workflows)


async def replay_query(client: Client, query: str, limit: int) -> list[ReplayOutcome]:
    """Replay the histories of at most `limit` workflows the visibility query matches."""

    async def histories() -> AsyncIterator[tuple[str, WorkflowHistory]]:
        async for history in client.list_workflows(query, limit=limit).map_histories():
            yield "server", history

    return await replay(histories())


# Core wraps the reason in a debug dump: `Failure { failure: Some(Failure { message: "..." ...`.
_CORE_MESSAGE = re.compile(r'message: "((?:[^"\\]|\\.)*)"')


def describe_error(error: Exception) -> str:
    """The error's type and the reason core gave, without the dump around it."""
    text = str(error)
    found = _CORE_MESSAGE.search(text)
    return f"{type(error).__name__}: {found.group(1) if found else text}"


def outcomes_table(outcomes: Sequence[ReplayOutcome], title: str) -> Table:
    table = Table(title=title, show_lines=True)
    table.add_column("workflow id", no_wrap=True)
    table.add_column("run id", no_wrap=True)
    table.add_column("type")
    table.add_column("events", justify="right")
    table.add_column("source", overflow="fold")
    table.add_column("replay")
    table.add_column("error")
    for outcome in outcomes:
        table.add_row(
            outcome.workflow_id,
            outcome.run_id,
            outcome.workflow_type,
            str(outcome.events),
            outcome.source,
            "[green]ok[/green]" if outcome.ok else "[red]failed[/red]",
            describe_error(outcome.error) if outcome.error is not None else "",
        )
    return table


def summary_line(outcomes: Sequence[ReplayOutcome]) -> str:
    failed = sum(not o.ok for o in outcomes)
    return f"replayed {len(outcomes)} workflow(s): {len(outcomes) - failed} ok, {failed} failed"


# Exit codes of the replay commands.
EXIT_FAILED = 1
EXIT_NOTHING = 2
console = Console(width=None if sys.stdout.isatty() else 160)


def report_replay(outcomes: list[ReplayOutcome], title: str, nothing: str) -> None:
    """Print the outcomes (exit 2 when there are none, 1 when any failed)."""
    if not outcomes:
        console.print(f"[red]{nothing}[/red]")
        raise typer.Exit(EXIT_NOTHING)
    console.print(outcomes_table(outcomes, title))
    console.print(summary_line(outcomes))
    if any(not o.ok for o in outcomes):
        raise typer.Exit(EXIT_FAILED)


def replay_command(
    query: Annotated[
        str,
        typer.Option(help="A visibility query, e.g. \"WorkflowType='Checkout'\"."),
    ],
    limit: Annotated[
        int, typer.Option(min=1, max=100_000, help="At most this many workflows.")
    ] = 100,
) -> None:
    """Replay live workflows that a query matches against this code's workflows.

    Temporal from the environment/profile. Exit 1 if any fails to replay, 2 if none matched.
    """

    async def run() -> list[ReplayOutcome]:
        try:
            client = await connect_temporal()
        except RuntimeError as err:
            console.print(f"[red]Could not connect to Temporal: {err}[/red]")
            raise typer.Exit(EXIT_NOTHING) from err
        try:
            return await replay_query(client, query, limit)
        except RPCError as err:
            console.print(f"[red]Query refused: {err}[/red]")
            raise typer.Exit(EXIT_NOTHING) from err

    report_replay(asyncio.run(run()), f"Replay of {query}", f"No workflow matches {query}")
