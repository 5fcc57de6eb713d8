"""Book a trip: `python -m examples.trip book [--declined] [--slow STEP:SECONDS] ...`.

Starts the saga with the engine's `decide` (workflow id `trip-ID`) and prints its answer as
JSON as soon as it is known; exits 0 whatever the answer, 2 on bad input, 1 when Temporal
cannot be reached. With --declined the bookings are undone newest first; with
--cancel-failures a cancellation gets stuck and waits in NEEDS_ATTENTION for an operator.
"""

import argparse
import asyncio
import sys
import uuid
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from examples.trip.models import TripRequest, TripResult, trip_workflow_id
from examples.trip.worker import task_queue
from examples.trip.workflow import TripBookingWorkflow
from temporal_saga import decide
from temporal_saga.worker import connect

STEPS = tuple(TripBookingWorkflow.saga_steps())
UNDOS = tuple(s.undo_name for s in TripBookingWorkflow.saga_steps().values() if s.undo_name)
# The request's fields that have an option of another name.
OPTION_OF = {
    "payment_declined": "--declined",
    "slow_step": "--slow",
    "slow_seconds": "--slow",
    "cancel_failures": "--cancel-failures",
}


def _pair(text: str, names: Sequence[str], what: str) -> tuple[str, float]:
    name, _, value = text.partition(":")
    if name not in names:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected NAME:{what}, NAME one of {', '.join(names)}"
        )
    try:
        return name, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: {what} must be a number") from None


def slow_step(text: str) -> tuple[str, float]:
    return _pair(text, STEPS, "SECONDS")


def cancel_failure(text: str) -> tuple[str, int]:
    name, count = _pair(text, UNDOS, "N")
    if count < 0 or count != int(count):
        raise argparse.ArgumentTypeError(f"{text!r}: N must be a whole number, 0 or more")
    return name, int(count)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--trip-id", help="default: a new 12-character id")
    add("--traveller", default="Ada", help="who travels")
    add("--flight", default="LH 1234", help="the flight to book")
    add("--hotel", default="Hotel Adlon, 2 nights", help="the hotel to book")
    add("--car", default="compact", help="the car to rent")
    add("--amount-cents", type=int, default=129_900, help="the price of the trip")
    add("--deadline-seconds", type=int, default=120, help="not paid by then: undo")
    add("--attempts-before-attention", type=int, default=3, help="a cancellation's tries")
    add("--declined", action="store_true", help="simulate: the payment is declined")
    add("--slow", type=slow_step, metavar="STEP:SECONDS", help="simulate: a slow provider")
    add(
        "--cancel-failures",
        type=cancel_failure,
        action="append",
        default=[],
        metavar="NAME:N",
        help="simulate: that cancellation fails N times before it works (repeatable)",
    )


def request_of(args: argparse.Namespace) -> TripRequest:
    """The trip the options ask for; ValidationError names the fields that are wrong."""
    slow: tuple[str, float] | None = args.slow
    fields: dict[str, Any] = {
        "trip_id": args.trip_id or uuid.uuid4().hex[:12],
        "traveller": args.traveller,
        "flight": args.flight,
        "hotel": args.hotel,
        "car": args.car,
        "amount_cents": args.amount_cents,
        "deadline_seconds": args.deadline_seconds,
        "attempts_before_attention": args.attempts_before_attention,
        "simulate": {
            "payment_declined": args.declined,
            "slow_step": slow[0] if slow else None,
            "slow_seconds": slow[1] if slow else 0,
            "cancel_failures": dict(args.cancel_failures),
        },
    }
    return TripRequest.model_validate(fields)


def describe(err: ValidationError) -> str:
    """Each error with the option it came from: `--trip-id: String should match ...`."""
    problems = []
    for error in err.errors():
        loc = [str(part) for part in error["loc"]]
        field = loc[1] if loc[:1] == ["simulate"] and len(loc) > 1 else loc[0]
        option = OPTION_OF.get(field, "--" + field.replace("_", "-"))
        problems.append(f"{option}: {error['msg']}")
    return "; ".join(problems)


async def book(request: TripRequest) -> TripResult:
    client = await connect()
    answer, _ = await decide(
        client,
        TripBookingWorkflow,
        request,
        workflow_id=trip_workflow_id(request.trip_id),
        task_queue=task_queue(),
    )
    return answer


def main(args: argparse.Namespace) -> int:
    try:
        request = request_of(args)
    except ValidationError as err:
        print(f"invalid trip: {describe(err)}", file=sys.stderr)
        return 2
    try:
        answer = asyncio.run(book(request))
    except RuntimeError as err:  # the SDK's "Failed client connect: ..."
        print(f"cannot book the trip: {err}", file=sys.stderr)
        return 1
    print(answer.model_dump_json(indent=2))
    workflow_id = trip_workflow_id(request.trip_id)
    print(f"Follow it: checkout-saga status --workflow-id {workflow_id}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m examples.trip.starter", description=__doc__)
    add_arguments(parser)
    raise SystemExit(main(parser.parse_args()))
