"""`checkout-saga trip book`: start the example saga (examples/trip), print its answer."""

import asyncio
import sys
import uuid
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console

from examples.trip.models import Simulation, TripRequest, TripResult, trip_workflow_id
from examples.trip.workflow import TripBookingWorkflow
from starter.checkouts import describe_validation_error
from temporal_saga.client import decide
from worker.clients import connect_temporal
from worker.settings import Settings

trip = typer.Typer(help="The example saga: a trip booking (examples/trip).", no_args_is_help=True)
# The answer goes to stdout as JSON; what to do next, to stderr.
console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


def _pairs(texts: list[str], what: str) -> dict[str, str]:
    pairs = {}
    for text in texts:
        name, sep, value = text.partition(":")
        if not sep or not name or not value:
            raise typer.BadParameter(f"{text!r}: expected NAME:{what}")
        pairs[name] = value
    return pairs


@trip.command()
def book(
    traveller: Annotated[str, typer.Option(help="Who travels.")] = "Ada",
    flight: Annotated[str, typer.Option(help="The flight to book.")] = "LH 1234",
    hotel: Annotated[str, typer.Option(help="The hotel to book.")] = "Hotel Adlon, 2 nights",
    car: Annotated[str, typer.Option(help="The car to rent.")] = "compact",
    amount_cents: Annotated[int, typer.Option(help="The price of the trip.")] = 129_900,
    trip_id: Annotated[str | None, typer.Option(help="Default: a new id.")] = None,
    deadline_seconds: Annotated[int, typer.Option(help="Not paid by then: undo.")] = 120,
    attempts_before_attention: Annotated[
        int, typer.Option(help="Failed tries of a cancellation before it waits for a person.")
    ] = 3,
    declined: Annotated[bool, typer.Option(help="Simulate: the payment is declined.")] = False,
    slow: Annotated[
        str | None,
        typer.Option(help="Simulate: STEP:SECONDS, that step's provider is slow (under 10 s)."),
    ] = None,
    cancel_failures: Annotated[
        list[str] | None,
        typer.Option(help="Simulate: COMPENSATION:N, it fails N times before it works."),
    ] = None,
) -> None:
    """Book a trip with the example saga; prints its answer as soon as it is known.

    With --declined the bookings are undone in reverse order; with --cancel-failures a
    cancellation gets stuck and waits in NEEDS_ATTENTION for `checkout-saga attention`.
    """
    slow_steps = _pairs([slow] if slow else [], "SECONDS")
    try:
        request = TripRequest.model_validate(
            {
                "trip_id": trip_id or uuid.uuid4().hex[:12],
                "traveller": traveller,
                "flight": flight,
                "hotel": hotel,
                "car": car,
                "amount_cents": amount_cents,
                "deadline_seconds": deadline_seconds,
                "attempts_before_attention": attempts_before_attention,
                "simulate": Simulation.model_validate(
                    {
                        "payment_declined": declined,
                        "slow_step": next(iter(slow_steps), None),
                        "slow_seconds": next(iter(slow_steps.values()), 0),
                        "cancel_failures": _pairs(cancel_failures or [], "N"),
                    }
                ),
            }
        )
    except ValidationError as err:
        console.print(f"[red]Invalid trip: {describe_validation_error(err)}[/red]")
        raise typer.Exit(2) from err

    async def place() -> TripResult:
        client = await connect_temporal()
        workflow_id = trip_workflow_id(request.trip_id)
        answer, _ = await decide(
            client,
            TripBookingWorkflow,
            request,
            workflow_id=workflow_id,
            task_queue=Settings().task_queue,
        )
        return answer

    answer = asyncio.run(place())
    print(answer.model_dump_json(indent=2))
    console.print(
        f"Follow it: checkout-saga status --workflow-id {trip_workflow_id(request.trip_id)}"
    )
