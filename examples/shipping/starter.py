"""Place an order: `python -m examples.shipping order [--declined] [--refusing-carrier a|b]
[--slow STEP:SECONDS] [--cancel-failures NAME:N] ...`.

Starts the saga with the engine's `decide` (workflow id `shipped-order-ID`; its shipping runs
as `shipped-order-ID/shipping`) and prints its answer as JSON as soon as it is known; exits 0
whatever the answer, 2 on bad input, 1 when Temporal cannot be reached. With --declined the
shipping is undone (delivery, then pickup) and then the stock; with --cancel-failures a
carrier's cancellation gets stuck, and the nested saga waits in NEEDS_ATTENTION.
"""

import argparse
import asyncio
import sys
import uuid
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from examples.shipping.models import (
    CANCELS,
    STEPS,
    OrderRequest,
    OrderResult,
    order_workflow_id,
    shipping_workflow_id,
)
from examples.shipping.worker import task_queue
from examples.shipping.workflow import OrderWorkflow
from temporal_saga import decide
from temporal_saga.worker import connect


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
    name, count = _pair(text, CANCELS, "N")
    if count < 0 or count != int(count):
        raise argparse.ArgumentTypeError(f"{text!r}: N must be a whole number, 0 or more")
    return name, int(count)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--order-id", help="default: a new 12-character id")
    add("--sku", default="teapot", help="what is ordered")
    add("--quantity", type=int, default=1)
    add("--address", default="1 Main Street, Springfield", help="where it goes")
    add("--amount-cents", type=int, default=4_900, help="the price of the order")
    add("--deadline-seconds", type=int, default=120, help="not charged by then: undo")
    add("--attempts-before-attention", type=int, default=3, help="a compensation's tries")
    add("--declined", action="store_true", help="simulate: the charge is declined")
    add("--refusing-carrier", choices=("a", "b"), help="simulate: this carrier refuses")
    add("--slow", type=slow_step, metavar="STEP:SECONDS", help="simulate: a slow desk")
    add(
        "--cancel-failures",
        type=cancel_failure,
        action="append",
        default=[],
        metavar="NAME:N",
        help="simulate: that compensation fails N times before it works (repeatable)",
    )


def request_of(args: argparse.Namespace) -> OrderRequest:
    """The order the options ask for; ValidationError names the fields that are wrong."""
    slow: tuple[str, float] | None = args.slow
    fields: dict[str, Any] = {
        "order_id": args.order_id or uuid.uuid4().hex[:12],
        "sku": args.sku,
        "quantity": args.quantity,
        "address": args.address,
        "amount_cents": args.amount_cents,
        "deadline_seconds": args.deadline_seconds,
        "attempts_before_attention": args.attempts_before_attention,
        "simulate": {
            "charge_declined": args.declined,
            "refusing_carrier": args.refusing_carrier,
            "slow_step": slow[0] if slow else None,
            "slow_seconds": slow[1] if slow else 0,
            "cancel_failures": dict(args.cancel_failures),
        },
    }
    return OrderRequest.model_validate(fields)


def describe(err: ValidationError) -> str:
    """Each error with its option: `--order-id: String should match ...`."""
    options = {"charge_declined": "--declined", "slow_step": "--slow", "slow_seconds": "--slow"}
    problems = []
    for error in err.errors():
        loc = [str(part) for part in error["loc"]]
        field = loc[1] if loc[:1] == ["simulate"] and len(loc) > 1 else loc[0]
        option = options.get(field, "--" + field.replace("_", "-"))
        problems.append(f"{option}: {error['msg']}")
    return "; ".join(problems)


async def place(request: OrderRequest) -> OrderResult:
    client = await connect()
    answer, _ = await decide(
        client,
        OrderWorkflow,
        request,
        workflow_id=order_workflow_id(request.order_id),
        task_queue=task_queue(),
    )
    return answer


def main(args: argparse.Namespace) -> int:
    try:
        request = request_of(args)
    except ValidationError as err:
        print(f"invalid order: {describe(err)}", file=sys.stderr)
        return 2
    try:
        answer = asyncio.run(place(request))
    except RuntimeError as err:  # the SDK's "Failed client connect: ..."
        print(f"cannot place the order: {err}", file=sys.stderr)
        return 1
    print(answer.model_dump_json(indent=2))
    for workflow_id in (
        order_workflow_id(request.order_id),
        shipping_workflow_id(request.order_id),
    ):
        print(f"Follow it: checkout-saga status --workflow-id {workflow_id}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        prog="python -m examples.shipping.starter", description=__doc__
    )
    add_arguments(parser)
    raise SystemExit(main(parser.parse_args()))
