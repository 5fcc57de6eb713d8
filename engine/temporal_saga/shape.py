"""A saga's shape, read from its class alone (no Temporal server): its steps in the order
declared, what undoes each, its groups, its nested sagas and its pivot; as text
(`describe`) or as a Mermaid flowchart (`mermaid`), the forward path solid and the
compensation path (newest first) dashed.

    python -m temporal_saga.shape MODULE TYPE [--mermaid]

The order shown is the order declared: the engine checks the rules of the order in which the
steps run (once each, nothing undone after the pivot), not that it is this one.
"""

import argparse
import importlib
import itertools
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from temporalio import workflow

from temporal_saga.nested import ChildSaga
from temporal_saga.steps import Step, activity_name
from temporal_saga.workflow import SagaWorkflow

Saga = type[SagaWorkflow[Any, Any]]


@dataclass(frozen=True)
class StepShape:
    """One step: its activity (a nested saga's workflow type), its compensation's name."""

    name: str
    activity: str
    undo: str | None
    pivot: bool
    # After the pivot: forward only, retried until done.
    forward_only: bool
    local_first: bool
    task_queue: str | None
    child: "SagaShape | None"


@dataclass(frozen=True)
class Stage:
    """What runs at one place of the saga: one step, or a group's members together."""

    group: str | None
    steps: tuple[StepShape, ...]


@dataclass(frozen=True)
class SagaShape:
    """A saga: its workflow type, its class (module.qualname), its stages in the order
    declared."""

    type_name: str
    class_path: str
    stages: tuple[Stage, ...]

    @property
    def steps(self) -> list[StepShape]:
        return [step for stage in self.stages for step in stage.steps]

    @property
    def pivot(self) -> StepShape | None:
        return next((step for step in self.steps if step.pivot), None)

    @property
    def compensations(self) -> list[StepShape]:
        """The steps that something undoes, newest first: the order of the compensations. A
        group's members register theirs in the order its calls are given, taken here as the
        group's own order."""
        return [step for step in reversed(self.steps) if step.undo is not None]


def type_name(cls: type) -> str:
    """The saga's workflow type (its `@workflow.defn` name), else its class's name."""
    defn = workflow._Definition.from_class(cls)
    return defn.name if defn is not None and defn.name else cls.__name__


def shape(cls: Saga) -> SagaShape:
    """What `describe` and `mermaid` draw, read from the class's declarations."""
    steps = list(cls.saga_steps().values())
    group_of = {id(m): g for g in cls.saga_groups().values() for m in g.members}
    pivot_at = next((i for i, step in enumerate(steps) if step.pivot), None)
    after = {id(step) for step in steps[pivot_at + 1 :]} if pivot_at is not None else set()

    def one(step: Step[Any, Any, Any]) -> StepShape:
        child = step.child if isinstance(step, ChildSaga) else None
        nested = shape(child) if child is not None and issubclass(child, SagaWorkflow) else None
        return StepShape(
            name=step.name,
            activity=nested.type_name if nested is not None else activity_name(step.activity),
            undo=step.undo_name if step.compensated else None,
            pivot=step.pivot,
            forward_only=id(step) in after,
            local_first=step.local_first,
            task_queue=step.task_queue,
            child=nested,
        )

    # A group stands where its first member is declared, its members in the group's order.
    stages: list[Stage] = []
    placed: set[str] = set()
    for step in steps:
        group = group_of.get(id(step))
        if group is None:
            stages.append(Stage(None, (one(step),)))
        elif group.name not in placed:
            placed.add(group.name)
            stages.append(Stage(group.name, tuple(one(member) for member in group.members)))
    return SagaShape(type_name(cls), f"{cls.__module__}.{cls.__qualname__}", tuple(stages))


# -- text -----------------------------------------------------------------------------------


def describe(cls: Saga) -> str:
    """The saga's shape as text, one line per step."""
    saga = shape(cls)
    lines = [f"{saga.type_name} ({saga.class_path})", "steps, in the order declared:"]
    lines += _text_steps(saga, "  ")
    lines.append(f"compensation, newest first: {_text_undos(saga)}")
    pivot = saga.pivot
    if pivot is None:
        lines.append("pivot: none (CONFIRMED once every step has succeeded)")
    else:
        lines.append(f"pivot: {pivot.name} (CONFIRMED once it succeeds; nothing undone after it)")
        after = [step.name for step in saga.steps if step.forward_only]
        lines.append(f"after the pivot, forward only: {', '.join(after) or 'no step declared'}")
    return "\n".join(lines) + "\n"


def _text_steps(saga: SagaShape, indent: str) -> list[str]:
    lines: list[str] = []
    for number, stage in enumerate(saga.stages, 1):
        head = f"{indent}{number}. "
        if stage.group is None:
            lines += _text_step(stage.steps[0], head, " " * len(head))
            continue
        lines.append(f"{head}group {stage.group}, its members together:")
        for step in stage.steps:
            lines += _text_step(step, f"{indent}   - ", f"{indent}     ")
    return lines or [f"{indent}(no step declared)"]


def _text_step(step: StepShape, head: str, indent: str) -> list[str]:
    if step.child is None:
        facts = [f"activity {step.activity}"]
        if step.undo is not None:
            facts.append(f"undo {step.undo}")
        elif not step.pivot and not step.forward_only:
            facts.append("no undo")
    else:
        facts = [f"nested saga {step.child.type_name} ({step.child.class_path})"]
    lines = [f"{head}{step.name}: {', '.join([*facts, *_flags(step)])}"]
    if step.child is not None:
        lines += _text_steps(step.child, indent)
        lines.append(f"{indent}its compensation, newest first: {_text_undos(step.child)}")
    return lines


def _flags(step: StepShape) -> list[str]:
    return [
        *(["PIVOT"] if step.pivot else []),
        *(["forward only"] if step.forward_only else []),
        *(["local first"] if step.local_first else []),
        *([f"task queue {step.task_queue}"] if step.task_queue else []),
    ]


def _text_undos(saga: SagaShape) -> str:
    undos = [
        f"{step.undo} (its nested saga's: {_text_undos(step.child)})"
        if step.child is not None
        else str(step.undo)
        for step in saga.compensations
    ]
    return ", ".join(undos) or "nothing to undo"


# -- Mermaid --------------------------------------------------------------------------------


def mermaid(cls: Saga) -> str:
    """The saga's shape as a Mermaid flowchart: the steps solid from the start to CONFIRMED, a
    group a box of its members, a nested saga a box of its steps; a dashed `fails` edge from
    each step up to the pivot to where its failure starts the compensation, and the
    compensations dashed, newest first, to REJECTED."""
    saga = shape(cls)
    chart = _Chart()
    chart.node("start", saga.type_name, "([", "])")
    chart.forward(saga, "", "start", "confirmed")
    chart.node("confirmed", "CONFIRMED", "([", "])")
    if saga.compensations:
        chart.box("compensation", "compensation, newest first")
    undos = chart.compensation(saga, "")
    if saga.compensations:
        chart.end()
    chart.node("rejected", "REJECTED", "([", "])")
    if undos:
        chart.edge(undos[-1], "rejected", "-.->")
    chart.fails(saga, "", "rejected")
    return "\n".join(["flowchart TD", *chart.lines, *chart.edges]) + "\n"


class _Chart:
    """A flowchart: its nodes, indented as its boxes nest, then its edges. A node's id is its
    kind and its step's path (a nested saga's steps under its step's name): s_ a step, g_ a
    group, c_ a nested saga, u_ an undo, k_ a nested saga's compensations."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.edges: list[str] = []
        self.depth = 1

    def line(self, text: str) -> None:
        self.lines.append("    " * self.depth + text)

    def node(self, id_: str, label: str, open_: str, close: str) -> None:
        self.line(f'{id_}{open_}"{_quote(label)}"{close}')

    def edge(self, a: str, b: str, arrow: str) -> None:
        self.edges.append(f"    {a} {arrow} {b}")

    def box(self, id_: str, label: str) -> None:
        self.line(f'subgraph {id_} ["{_quote(label)}"]')
        self.depth += 1

    def end(self) -> None:
        self.depth -= 1
        self.line("end")

    def forward(self, saga: SagaShape, path: str, before: str, after: str) -> list[str]:
        """Draw the stages, chained solid (between `before` and `after` when given); their
        ids."""
        ids = [self.stage(stage, path) for stage in saga.stages]
        ends = [before] if before else []
        for a, b in itertools.pairwise([*ends, *ids, *([after] if after else [])]):
            self.edge(a, b, "-->")
        return ids

    def stage(self, stage: Stage, path: str) -> str:
        if stage.group is None:
            return self.step(stage.steps[0], path)
        self.box(f"g_{path}{stage.group}", f"group {stage.group}: together")
        for step in stage.steps:
            self.step(step, path)
        self.end()
        return f"g_{path}{stage.group}"

    def step(self, step: StepShape, path: str) -> str:
        id_ = _id(step, path, "c" if step.child else "s")
        if step.child is not None:
            self.box(id_, f"{step.name}: nested saga {step.child.type_name}")
            if not self.forward(step.child, f"{path}{step.name}__", "", ""):
                self.node(f"{id_}__none", "no step declared", "[", "]")
            self.end()
            return id_
        facts = [f"activity {step.activity}"] if step.activity != step.name else []
        label = "<br/>".join([step.name, *facts, *(flag.lower() for flag in _flags(step))])
        self.node(id_, label, *(("{{", "}}") if step.pivot else ("[", "]")))
        return id_

    def compensation(self, saga: SagaShape, path: str) -> list[str]:
        """Draw the undos newest first, chained dashed; their ids."""
        ids = [self.undo(step, path) for step in saga.compensations]
        for a, b in itertools.pairwise(ids):
            self.edge(a, b, "-.->")
        return ids

    def undo(self, step: StepShape, path: str) -> str:
        id_ = _undo_id(step, path)
        if step.child is None:
            self.node(id_, str(step.undo), "(", ")")
            return id_
        self.box(id_, f"{step.name} undone: {step.child.type_name} compensates")
        if not self.compensation(step.child, f"{path}{step.name}__"):
            self.node(f"{id_}__none", "nothing to undo", "(", ")")
        self.end()
        return id_

    def fails(self, saga: SagaShape, path: str, otherwise: str) -> None:
        """From each stage up to the pivot, to where its failure starts the compensation: the
        newest undo registered by then, the stage's own included (registered before it
        runs). After the pivot nothing is undone."""
        newest = otherwise
        for stage in saga.stages:
            if any(step.forward_only for step in stage.steps):
                break
            for step in stage.steps:
                if step.undo is not None:
                    newest = _undo_id(step, path)
            first = stage.steps[0]
            source = (
                f"g_{path}{stage.group}"
                if stage.group is not None
                else _id(first, path, "c" if first.child else "s")
            )
            self.edge(source, newest, "-. fails .->")


def _id(step: StepShape, path: str, kind: str) -> str:
    return f"{kind}_{path}{step.name}"


def _undo_id(step: StepShape, path: str) -> str:
    return _id(step, path, "k" if step.child else "u")


def _quote(label: str) -> str:
    return label.replace('"', "#quot;")


# -- finding a module's sagas, and the command ----------------------------------------------


def saga_types(module: ModuleType) -> dict[str, Saga]:
    """The sagas a module holds (defined or imported there), by workflow type."""
    found: dict[str, Saga] = {}
    for value in vars(module).values():
        if (
            isinstance(value, type)
            and issubclass(value, SagaWorkflow)
            and value is not SagaWorkflow
        ):
            found.setdefault(type_name(value), value)
    return dict(sorted(found.items()))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m temporal_saga.shape",
        description="Print a saga's steps, undos, groups, nested sagas and pivot.",
    )
    parser.add_argument("module", help="the module that holds the saga, e.g. myteam.sagas")
    parser.add_argument("type", help="the saga's workflow type (its @workflow.defn name)")
    parser.add_argument("--mermaid", action="store_true", help="as a Mermaid flowchart")
    args = parser.parse_args(argv)
    try:
        module = importlib.import_module(args.module)
    except Exception as err:  # any error of the module's own import: say which
        parser.error(f"cannot import {args.module}: {type(err).__name__}: {err}")
    sagas = saga_types(module)
    if args.type not in sagas:
        known = ", ".join(sagas) or "none"
        parser.error(f"no saga type {args.type!r} in {args.module}; its saga types: {known}")
    print(mermaid(sagas[args.type]) if args.mermaid else describe(sagas[args.type]), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
