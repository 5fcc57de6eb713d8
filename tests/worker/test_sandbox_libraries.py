"""What the worker passes through the workflow sandbox (worker/tuning.py) must be a library:
no state of its own that one run could leave to the next, and, for the application's
libraries, no workflow defined in it. The application's modules that define workflows stay
in the sandbox, which re-imports them for each run and refuses their non-deterministic
calls. The engine (temporal_saga) is passed through whole, on purpose, its own sweep
workflow with it: every module of it holds no mutable state."""

import asyncio
import collections
import enum
import importlib
import pkgutil
from typing import Any

import pytest
from pydantic import BaseModel
from temporalio import workflow
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

import temporal_saga
import temporal_saga.workflow as engine
from examples.trip.workflow import TripBookingWorkflow
from temporal_saga import SagaSweepWorkflow
from temporal_saga.worker import ENGINE_MODULES
from temporal_saga.worker import sandbox_runner as engine_sandbox
from worker.runner import WORKFLOWS
from worker.settings import Settings
from worker.tuning import (
    APP_LIBRARIES,
    WORKFLOW_LIBRARIES,
    sandbox_runner,
    worker_tuning,
)
from workflows.checkout import CheckoutWorkflow

MUTABLE = (list, dict, set, bytearray, collections.deque)
# Every module of the engine, which the workers pass through whole (ENGINE_MODULES).
ENGINE_MODULE_NAMES = [
    temporal_saga.__name__,
    *(m.name for m in pkgutil.walk_packages(temporal_saga.__path__, "temporal_saga.")),
]
# The workflows of the applications: the checkout worker's and the example trip's.
APP_WORKFLOWS = [
    cls for cls in [*WORKFLOWS, TripBookingWorkflow] if not cls.__module__.startswith("temporal_")
]


def _mutable(value: object) -> bool:
    if isinstance(value, tuple | frozenset):
        return any(_mutable(item) for item in value)
    return isinstance(value, MUTABLE)


def _passed_through(module: str, passthrough: tuple[str, ...]) -> bool:
    # As the sandbox matches them: the module itself or a package above it.
    return any(module == name or module.startswith(f"{name}.") for name in passthrough)


def _workflows_defined_in(name: str) -> list[type]:
    module = importlib.import_module(name)
    defined = [
        value
        for value in vars(module).values()
        if isinstance(value, type) and value.__module__ == name
    ]
    return [cls for cls in defined if workflow._Definition.from_class(cls)]


@pytest.mark.parametrize("name", APP_LIBRARIES)
def test_an_application_library_defines_no_workflow(name: str) -> None:
    assert _workflows_defined_in(name) == []


def test_the_engine_defines_no_workflow_but_its_sweep() -> None:
    assert ENGINE_MODULES == ("temporal_saga",) and len(ENGINE_MODULE_NAMES) > 10
    defined = [cls for name in ENGINE_MODULE_NAMES for cls in _workflows_defined_in(name)]
    assert defined == [SagaSweepWorkflow]


@pytest.mark.parametrize("name", [*ENGINE_MODULE_NAMES, *APP_LIBRARIES])
def test_a_library_holds_no_mutable_state(name: str) -> None:
    """Module globals, and the attributes of the classes it defines (its enums' and pydantic
    models' machinery aside), are functions, classes, modules or immutable values."""
    module = importlib.import_module(name)
    found: list[str] = []
    for key, value in vars(module).items():
        if not key.startswith("__") and _mutable(value):
            found.append(key)
        if not isinstance(value, type) or value.__module__ != name:
            continue
        if issubclass(value, enum.Enum | BaseModel):
            continue
        for attr, member in vars(value).items():
            if not attr.startswith("__") and _mutable(member):
                found.append(f"{key}.{attr}")
    assert found == [], f"{name}: mutable state {found}"


def test_no_application_workflow_is_passed_through_by_default() -> None:
    assert CheckoutWorkflow in APP_WORKFLOWS and TripBookingWorkflow in APP_WORKFLOWS
    for cls in APP_WORKFLOWS:
        assert not _passed_through(cls.__module__, WORKFLOW_LIBRARIES), cls
    # The engine's sweep is passed through with the engine, and it alone.
    passed = [cls for cls in WORKFLOWS if _passed_through(cls.__module__, WORKFLOW_LIBRARIES)]
    assert passed == [SagaSweepWorkflow]
    # The sandbox of a worker made with saga_worker (the trip's): the engine, not the saga.
    engine_only = tuple(engine_sandbox().restrictions.passthrough_modules)
    assert _passed_through(SagaSweepWorkflow.__module__, engine_only)
    assert not _passed_through(TripBookingWorkflow.__module__, engine_only)


def test_the_checkout_worker_passes_the_libraries_through() -> None:
    runner = worker_tuning(Settings())["workflow_runner"]
    assert isinstance(runner, SandboxedWorkflowRunner)
    passthrough = tuple(runner.restrictions.passthrough_modules)
    assert set(WORKFLOW_LIBRARIES) <= set(passthrough)
    assert not _passed_through(CheckoutWorkflow.__module__, passthrough)


def test_a_library_is_shared_while_the_workflow_class_is_made_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In the production sandbox, a run's checkout class is built again from its module, and
    its base, the engine's SagaWorkflow, is the worker's own."""
    runner = sandbox_runner()
    defn = workflow._Definition.must_from_class(CheckoutWorkflow)
    seen: list[Any] = []
    original = engine.SagaWorkflow.__init_subclass__.__func__  # type: ignore[attr-defined]

    def record(cls: type, /, **kwargs: Any) -> None:
        seen.append(cls)
        original(cls, **kwargs)

    monkeypatch.setattr(engine.SagaWorkflow, "__init_subclass__", classmethod(record))

    async def build() -> None:
        runner.prepare_workflow(defn)

    asyncio.run(build())
    made = [cls for cls in seen if cls.__name__ == CheckoutWorkflow.__name__]
    assert made and all(cls is not CheckoutWorkflow for cls in made)
    assert all(engine.SagaWorkflow in cls.__mro__ for cls in made)
