"""`checkout-saga describe TYPE`: a saga's steps, undos, groups, nested sagas and pivot, read
from its class (no server needed), as text or as a Mermaid flowchart (temporal_saga.shape)."""

import importlib
import pkgutil
from typing import Annotated

import typer

from temporal_saga.shape import Saga, describe, mermaid, saga_types

# Where the checkout app's sagas live: every module of this package is searched by default.
APP_PACKAGE = "workflows"


def _import_sagas(module: str) -> dict[str, Saga]:
    try:
        return saga_types(importlib.import_module(module))
    except Exception as err:  # whatever the module's own import raised: say which module
        typer.echo(f"cannot import {module}: {type(err).__name__}: {err}", err=True)
        raise typer.Exit(2) from err


def _app_sagas() -> dict[str, Saga]:
    package = importlib.import_module(APP_PACKAGE)
    found: dict[str, Saga] = {}
    for module in pkgutil.iter_modules(package.__path__):
        found.update(_import_sagas(f"{APP_PACKAGE}.{module.name}"))
    return dict(sorted(found.items()))


def describe_command(
    saga_type: Annotated[
        str, typer.Argument(metavar="TYPE", help="The saga's workflow type, e.g. Checkout.")
    ],
    module: Annotated[
        str | None,
        typer.Option(
            help="The module that holds the saga, e.g. examples.trip.workflow; default: the "
            f"checkout app's sagas ({APP_PACKAGE}/)."
        ),
    ] = None,
    as_mermaid: Annotated[
        bool, typer.Option("--mermaid", help="As a Mermaid flowchart (for Markdown).")
    ] = False,
) -> None:
    """A saga's shape from its declaration: its steps in the order declared, what undoes
    each, its groups, nested sagas and pivot, and its compensations newest first."""
    sagas = _import_sagas(module) if module else _app_sagas()
    saga = sagas.get(saga_type)
    if saga is None:
        where = module or f"the checkout app's sagas ({APP_PACKAGE}/)"
        known = ", ".join(sagas) or "none"
        typer.echo(f"no saga type {saga_type!r} in {where}; its saga types: {known}", err=True)
        raise typer.Exit(2)
    typer.echo(mermaid(saga) if as_mermaid else describe(saga), nl=False)
