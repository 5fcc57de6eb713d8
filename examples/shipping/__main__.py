"""`python -m examples.shipping worker` runs the example's worker (both sagas);
`python -m examples.shipping order ...` places an order and prints the saga's answer
(`order --help` lists the options)."""

import argparse
from collections.abc import Sequence

from examples.shipping import starter, worker


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m examples.shipping",
        description="The example of a nested saga: an order and its shipping.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("worker", help="run the example's worker until SIGINT or SIGTERM")
    starter.add_arguments(commands.add_parser("order", help="place an order, print the answer"))
    args = parser.parse_args(argv)
    if args.command == "worker":
        return worker.main()
    return starter.main(args)


if __name__ == "__main__":
    raise SystemExit(main())
