"""How each harness command runs as a process's main."""

import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import typer


def run(command: typer.Typer | Callable[..., Any]) -> NoReturn:
    """Run a Typer app, or a function as a one-command app, then leave without finalizers:
    temporalio can abort at interpreter exit (sdk-python #300)."""
    if isinstance(command, typer.Typer):
        app = command
    else:
        app = typer.Typer(pretty_exceptions_show_locals=False, add_completion=False)
        app.command()(command)
    code: int | str | None = 0
    try:
        app()
    except SystemExit as exit_:
        code = exit_.code
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code if isinstance(code, int) else 1)
