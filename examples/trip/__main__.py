"""`python -m examples.trip worker` runs the trip's worker; `python -m examples.trip book ...`
books a trip and prints the saga's answer (`book --help` lists the options)."""

import argparse
from collections.abc import Sequence

from examples.trip import starter, worker


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m examples.trip", description="The example saga: a trip booking."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("worker", help="run the trip's worker until SIGINT or SIGTERM")
    starter.add_arguments(commands.add_parser("book", help="book a trip, print the answer"))
    args = parser.parse_args(argv)
    if args.command == "worker":
        return worker.main()
    return starter.main(args)


if __name__ == "__main__":
    raise SystemExit(main())
