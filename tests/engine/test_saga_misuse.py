"""Misuse that used to pass silently, refused when the saga's class is made or when its
worker is built, each error naming the class (or saga), the step and the rule; and what a
saga no longer has to write (its undo's argument, its own result and status types)."""

import types
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import pytest
from google.protobuf.duration_pb2 import Duration
from pydantic import BaseModel
from temporalio import activity, workflow
from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from temporal_saga import (
    SagaDefinitionError,
    SagaOptions,
    SagaResult,
    SagaWorkflow,
    Step,
    decide,
)
from temporal_saga.models import Outcome
from temporal_saga.worker import SagaWiringError, check_served, saga_worker

LEDGER: dict[str, list[str]] = defaultdict(list)


@dataclass
class Transfer:
    transfer_id: str
    amount_cents: int
    refuse_settle: bool = False


class TransferResult(SagaResult):
    transfer_id: str


@activity.defn
async def hold(transfer: Transfer) -> None:
    LEDGER[transfer.transfer_id].append(f"hold:{transfer.amount_cents}")


@activity.defn
async def release(transfer: Transfer) -> None:
    LEDGER[transfer.transfer_id].append(f"release:{transfer.amount_cents}")


@activity.defn
async def settle(transfer: Transfer) -> None:
    if transfer.refuse_settle:
        raise ApplicationError("the bank refused", type="refused", non_retryable=True)
    LEDGER[transfer.transfer_id].append("settle")


async def not_an_activity(transfer: Transfer) -> None:
    """A coroutine that was never decorated with @activity.defn."""


# -- refused when the class is made ------------------------------------------------------------


def test_a_step_name_given_twice_is_refused() -> None:
    with pytest.raises(SagaDefinitionError, match=r"Twice: step 'hold' is declared twice"):

        class Twice(SagaWorkflow[Transfer, SagaResult]):
            hold = Step(hold, undo=release)
            hold = Step(settle, pivot=True)  # type: ignore[assignment]


def test_one_step_under_two_names_is_refused() -> None:
    shared = Step(hold, undo=release)
    with pytest.raises(SagaDefinitionError, match=r"Aliased: one Step is declared as both"):

        class Aliased(SagaWorkflow[Transfer, SagaResult]):
            first = shared
            second = shared


def test_an_undo_on_the_pivot_is_refused() -> None:
    with pytest.raises(
        SagaDefinitionError, match=r"UndoOnPivot: step 'settle' is the pivot and has undo="
    ):

        class UndoOnPivot(SagaWorkflow[Transfer, SagaResult]):
            settle = Step(settle, undo=release, pivot=True)  # type: ignore[call-overload]


@pytest.mark.parametrize("role", ["activity", "undo"])
def test_a_step_or_undo_that_is_not_an_activity_is_refused(role: str) -> None:
    fn: Any = not_an_activity
    step = Step(fn, undo=release) if role == "activity" else Step(hold, undo=fn)
    with pytest.raises(
        SagaDefinitionError,
        match=rf"NotActivity: step 'hold': its {role} .*not_an_activity.* is not an activity",
    ):
        types.new_class(
            "NotActivity",
            (SagaWorkflow[Transfer, SagaResult],),
            exec_body=lambda namespace: namespace.update({"hold": step}),
        )


def test_a_result_field_nothing_provides_is_refused() -> None:
    class Receipt(SagaResult):
        receipt_number: str

    with pytest.raises(
        SagaDefinitionError,
        match=r"Unprovided: the field\(s\) receipt_number of its result Receipt are provided "
        r"by nothing",
    ):

        class Unprovided(SagaWorkflow[Transfer, Receipt]):
            hold = Step(hold, undo=release)


def test_a_result_field_from_result_fields_is_accepted() -> None:
    class Receipt(SagaResult):
        receipt_number: str

    class Provided(SagaWorkflow[Transfer, Receipt]):
        hold = Step(hold, undo=release)

        def result_fields(self) -> dict[str, object]:
            return {"receipt_number": "r-1"}

    assert list(Provided.saga_steps()) == ["hold"]


def test_a_result_type_that_is_not_a_saga_result_is_refused() -> None:
    class Plain(BaseModel):
        ok: bool

    with pytest.raises(SagaDefinitionError, match=r"Wrong: its result type .* is not SagaResult"):

        class Wrong(SagaWorkflow[Transfer, Plain]):  # type: ignore[type-var]
            hold = Step(hold, undo=release)


# -- refused when the worker is built ------------------------------------------------------------


@workflow.defn(name="MisuseTransfer")
class TransferSaga(SagaWorkflow[Transfer, TransferResult]):
    hold = Step(hold, undo=release)
    settle = Step(settle, pivot=True)

    @workflow.init
    def __init__(self, transfer: Transfer) -> None:
        super().__init__(transfer, SagaOptions())

    @workflow.run
    async def run(self, transfer: Transfer) -> TransferResult:
        return await self.run_saga(self.transfer(transfer))

    async def transfer(self, transfer: Transfer) -> None:
        await self.hold(transfer)  # its undo gets the same Transfer
        await self.settle(transfer)


def test_an_undo_no_worker_registers_is_refused_when_the_worker_is_built() -> None:
    with pytest.raises(
        SagaWiringError,
        match=r"TransferSaga: step 'hold' is undone by activity 'release', which this worker "
        r"\(task queue 'transfers'\) does not register",
    ):
        check_served([TransferSaga], [hold, settle], task_queue="transfers")


def test_a_step_no_worker_registers_is_refused_by_saga_worker(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    with pytest.raises(SagaWiringError, match=r"step 'settle' runs activity 'settle'"):
        saga_worker(
            time_skipping_env.client,
            task_queue="transfers",
            sagas=[TransferSaga],
            activities=[hold, release],
        )


@pytest.mark.slow
async def test_a_namespace_without_the_saga_search_attributes_is_refused_as_the_worker_starts(
    dev_env: WorkflowEnvironment,
) -> None:
    namespace = f"no-saga-attributes-{uuid.uuid4().hex[:8]}"
    await dev_env.client.workflow_service.register_namespace(
        RegisterNamespaceRequest(
            namespace=namespace, workflow_execution_retention_period=Duration(seconds=86_400)
        )
    )
    client = await Client.connect(
        dev_env.client.service_client.config.target_host, namespace=namespace
    )
    worker = saga_worker(
        client, task_queue="transfers", sagas=[TransferSaga], activities=[hold, release, settle]
    )
    refusal = (
        rf"namespace '{namespace}' has no Keyword search attribute SagaStatus, SagaStep, .*"
        rf"`temporal operator search-attribute create --namespace {namespace} --name SagaStatus "
        r"--name SagaStep --type Keyword`"
    )
    with pytest.raises(SagaWiringError, match=refusal):
        async with worker:
            pytest.fail("the worker started")
    with pytest.raises(SagaWiringError, match=refusal):
        await worker.run()


def test_an_activity_served_elsewhere_is_accepted() -> None:
    check_served([TransferSaga], [hold, settle], task_queue="t", served_elsewhere={"release"})


# -- what a saga no longer writes ------------------------------------------------------------


@pytest.mark.parametrize("refuse", [False, True])
async def test_the_undo_gets_the_step_argument_and_the_result_its_own_field(
    time_skipping_env: WorkflowEnvironment, refuse: bool
) -> None:
    transfer = Transfer(transfer_id=f"t-{uuid.uuid4().hex[:8]}", amount_cents=500)
    transfer.refuse_settle = refuse
    async with saga_worker(
        time_skipping_env.client,
        task_queue="transfers",
        sagas=[TransferSaga],
        activities=[hold, release, settle],
    ):
        result, handle = await decide(
            time_skipping_env.client,
            TransferSaga,
            transfer,
            workflow_id=f"transfer-{transfer.transfer_id}",
            task_queue="transfers",
        )
        final = await handle.result()
    assert result.transfer_id == transfer.transfer_id  # from the input, no code of its own
    if refuse:
        assert final.status is Outcome.REJECTED
        assert LEDGER[transfer.transfer_id] == ["hold:500", "release:500"]
    else:
        assert final.status is Outcome.CONFIRMED
        assert LEDGER[transfer.transfer_id] == ["hold:500", "settle"]


@workflow.defn(name="MisuseNoInit")
class NoInitSaga(SagaWorkflow[Transfer, TransferResult]):
    """No @workflow.init: the engine gives it one that passes the input."""

    hold = Step(hold, undo=release)
    settle = Step(settle, pivot=True)

    @workflow.run
    async def run(self, transfer: Transfer) -> TransferResult:
        return await self.run_saga(self.transfer(transfer))

    async def transfer(self, transfer: Transfer) -> None:
        await self.hold(transfer)
        await self.settle(transfer)


async def test_a_saga_without_its_own_init_gets_one(time_skipping_env: WorkflowEnvironment) -> None:
    transfer = Transfer(transfer_id=f"t-{uuid.uuid4().hex[:8]}", amount_cents=700)
    async with saga_worker(
        time_skipping_env.client,
        task_queue="no-init",
        sagas=[NoInitSaga],
        activities=[hold, release, settle],
    ):
        result, _ = await decide(
            time_skipping_env.client,
            NoInitSaga,
            transfer,
            workflow_id=f"transfer-{transfer.transfer_id}",
            task_queue="no-init",
        )
    assert result.status is Outcome.CONFIRMED
    assert LEDGER[transfer.transfer_id] == ["hold:700", "settle"]


@dataclass
class Hold:
    hold_id: str


@activity.defn
async def release_by_id(hold: Hold) -> None:
    LEDGER[hold.hold_id].append("release_by_id")


@workflow.defn(name="MisuseUndoType")
class UndoTypeSaga(SagaWorkflow[Transfer, SagaResult]):
    """Its undo takes a Hold, and its step forgets to pass one."""

    hold = Step(hold, undo=release_by_id)

    @workflow.run
    async def run(self, transfer: Transfer) -> SagaResult:
        return await self.run_saga(self.hold(transfer))


async def test_an_undo_that_takes_another_type_needs_its_undo_arg(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    transfer = Transfer(transfer_id=f"t-{uuid.uuid4().hex[:8]}", amount_cents=100)
    async with saga_worker(
        time_skipping_env.client,
        task_queue="undo-type",
        sagas=[UndoTypeSaga],
        activities=[hold, release_by_id],
    ):
        result, _ = await decide(
            time_skipping_env.client,
            UndoTypeSaga,
            transfer,
            workflow_id=f"transfer-{transfer.transfer_id}",
            task_queue="undo-type",
        )
    assert result.status is Outcome.REJECTED
    assert result.reason_code == "saga_misuse"
    assert result.reason == (
        "step 'hold': its undo 'release_by_id' takes Hold, and the step's argument (which it "
        "gets by default) is Transfer: pass its argument with undo_arg="
    )
    assert LEDGER[transfer.transfer_id] == []  # refused before the step ran
