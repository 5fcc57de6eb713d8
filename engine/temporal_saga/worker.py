"""Wiring: a client and a worker that can run sagas and talk to the operator commands.

    client = await connect()
    worker = saga_worker(
        client, task_queue="transfers", sagas=[TransferWorkflow], activities=bank.all()
    )
    async with worker:
        ...

`connect` reads Temporal's connection from the environment and the TOML profile
(`temporalio.envconfig`: TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY,
TEMPORAL_PROFILE, ...), and sets what every part that reads a saga's payloads must share: the
pydantic data converter and, when SAGA_CODEC_KEYS is set, the payload codec
(temporal_saga.codec). `saga_worker` registers the sagas with the engine's reconciler (its
sweep workflow and activities), passes the engine through the workflow sandbox, and checks,
before anything runs, that every step's and undo's activity is served and, as the worker
starts, that the namespace has the search attributes every saga keeps current.
"""

import importlib
import os
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client, Interceptor
from temporalio.envconfig import ClientConfig
from temporalio.runtime import Runtime
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from temporal_saga.codec import data_converter
from temporal_saga.reconcile import SagaSweepWorkflow
from temporal_saga.runs import SagaRuns
from temporal_saga.search import SEARCH_ATTRIBUTES
from temporal_saga.steps import activity_name
from temporal_saga.workflow import SagaWorkflow

# The engine, passed through the workflow sandbox whole: deterministic library code that
# holds no state of its own (a saga's own module stays in the sandbox).
ENGINE_MODULES = ("temporal_saga",)


class SagaWiringError(ValueError):
    """A worker that could not run one of its sagas: a step's activity no one serves, or a
    namespace without the sagas' search attributes."""


class SagaWorker(Worker):
    """A Worker that, as it starts, checks the namespace has the search attributes every saga
    keeps current: without them each saga's first workflow task fails, and only the
    worker's log says why."""

    async def __aenter__(self) -> Worker:
        await require_search_attributes(self.client)
        return await super().__aenter__()

    async def run(self) -> None:
        await require_search_attributes(self.client)
        await super().run()


async def require_search_attributes(client: Client) -> None:
    """SagaWiringError unless the client's namespace has SagaStatus and SagaStep (Keyword).
    A server that cannot list them (the time-skipping test server) or a client not allowed
    to is taken at its word."""
    try:
        listed = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=client.namespace)
        )
    except RPCError as err:
        if err.status in (RPCStatusCode.UNIMPLEMENTED, RPCStatusCode.PERMISSION_DENIED):
            return
        raise
    keyword = IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
    missing = [
        key.name for key in SEARCH_ATTRIBUTES if listed.custom_attributes.get(key.name) != keyword
    ]
    if missing:
        names = " ".join(f"--name {name}" for name in missing)
        flags = " ".join(f"--search-attribute {name}=Keyword" for name in missing)
        raise SagaWiringError(
            f"namespace {client.namespace!r} has no Keyword search attribute "
            f"{', '.join(missing)}, which every saga keeps current: create it with "
            f"`temporal operator search-attribute create --namespace {client.namespace} "
            f"{names} --type Keyword` (a dev server: start it with {flags}; a test's "
            "WorkflowEnvironment: search_attributes=temporal_saga.search.SEARCH_ATTRIBUTES)"
        )


async def connect(
    env: Mapping[str, str] | None = None,
    *,
    identity: str | None = None,
    interceptors: Sequence[Interceptor] = (),
    runtime: Runtime | None = None,
) -> Client:
    """A Temporal client for sagas: the connection from the environment and the TOML profile
    (`env` replaces the process environment), the pydantic data converter, payloads
    encrypted when SAGA_CODEC_KEYS is set, and OpenTelemetry tracing when a tracer
    provider is installed (and `interceptors` gives none of its own)."""
    config = ClientConfig.load_client_connect_config(override_env_vars=env)
    config.setdefault("target_host", "localhost:7233")
    return await Client.connect(
        **config,
        data_converter=data_converter(env),
        # Not the SDK's default "pid@hostname": a machine's name has no place in a history.
        identity=identity or f"temporal-saga-{os.getpid()}",
        interceptors=list(interceptors) or _tracing_interceptors(),
        runtime=runtime,
    )


def saga_worker(
    client: Client,
    *,
    task_queue: str,
    sagas: Sequence[type[SagaWorkflow[Any, Any]]],
    activities: Sequence[Any] = (),
    workflows: Sequence[type] = (),
    served_elsewhere: Collection[str] = (),
    passthrough_modules: Sequence[str] = (),
    reconciler: bool = True,
    **worker_options: Any,
) -> Worker:
    """A Worker on `task_queue` for `sagas`, their `activities` and any other `workflows`.

    - With `reconciler` (the default), it also runs the engine's sweep (`SagaSweep`) and its
      activities, so a sweep (on its Schedule, or run now) can run here.
    - The engine (and `passthrough_modules`) pass through the workflow sandbox.
    - Every step's and undo's activity must be registered here (in `activities`), or named in
      `served_elsewhere`, or run on another task queue (`Step(..., task_queue=...)`); else
      SagaWiringError names the saga, the step and the activity.
    - As it starts (`async with`, or `run()`), SagaWiringError if the namespace lacks the
      search attributes SagaStatus or SagaStep (Keyword), with the command that adds them.
    `worker_options` go to `temporalio.worker.Worker` as they are.
    """
    all_activities = [*activities, *(SagaRuns(client).all() if reconciler else ())]
    check_served(sagas, all_activities, task_queue=task_queue, served_elsewhere=served_elsewhere)
    all_workflows = [*sagas, *workflows, *([SagaSweepWorkflow] if reconciler else [])]
    worker_options.setdefault("workflow_runner", sandbox_runner(*passthrough_modules))
    return SagaWorker(
        client,
        task_queue=task_queue,
        workflows=list(dict.fromkeys(all_workflows)),
        activities=all_activities,
        **worker_options,
    )


def sandbox_runner(*passthrough_modules: str) -> SandboxedWorkflowRunner:
    """The SDK's workflow sandbox with the engine (and `passthrough_modules`) passed through."""
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(
            *ENGINE_MODULES, *passthrough_modules
        )
    )


def check_served(
    sagas: Sequence[type[SagaWorkflow[Any, Any]]],
    activities: Sequence[Any],
    *,
    task_queue: str,
    served_elsewhere: Collection[str] = (),
) -> None:
    """Every step and undo of `sagas` runs an activity registered in `activities`, named in
    `served_elsewhere`, or on a task queue other than `task_queue`, and every nested saga is
    one of `sagas` (or likewise served elsewhere); else SagaWiringError."""
    registered = {activity_name(fn) for fn in activities}
    for saga in sagas:
        if not (isinstance(saga, type) and issubclass(saga, SagaWorkflow)):
            raise SagaWiringError(f"{saga!r} is not a saga (a subclass of SagaWorkflow)")
        for step in saga.saga_steps().values():
            if step.task_queue not in (None, task_queue):
                continue
            if step.child is not None:
                if step.child not in sagas and step.child.__name__ not in served_elsewhere:
                    raise SagaWiringError(
                        f"{saga.__qualname__}: step {step.name!r} runs the nested saga "
                        f"{step.child.__qualname__}, which this worker (task queue "
                        f"{task_queue!r}) does not register: pass it in sagas=, or name its "
                        "class in served_elsewhere= if another worker on this task queue "
                        "serves it, or give the step the task_queue= of the worker that does"
                    )
                continue
            for role, fn in (("runs", step.activity), ("is undone by", step.undo)):
                if fn is None:
                    continue
                name = activity_name(fn)
                if name not in registered and name not in served_elsewhere:
                    raise SagaWiringError(
                        f"{saga.__qualname__}: step {step.name!r} {role} activity {name!r}, "
                        f"which this worker (task queue {task_queue!r}) does not register: "
                        "pass it in activities=, or name it in served_elsewhere= if another "
                        "worker on this task queue serves it, or give the step the "
                        "task_queue= of the worker that does"
                    )


def _tracing_interceptors() -> list[Interceptor]:
    """Temporal's OpenTelemetry interceptor when opentelemetry is installed and a tracer
    provider is set; none otherwise (OpenTelemetry is not a dependency of the engine)."""
    try:
        trace: Any = importlib.import_module("opentelemetry.trace")
        contrib: Any = importlib.import_module("temporalio.contrib.opentelemetry")
    except ImportError:
        return []
    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return []
    interceptor: Interceptor = contrib.TracingInterceptor(provider.get_tracer("temporal_saga"))
    return [interceptor]
