"""Reconciliation: sagas that ended without settling what they opened.

Temporal runs no workflow code when a run is terminated, times out, or is reset away from, so
such a saga's compensations never start and its records (an order, a reservation, a charge)
stay open. The engine's sweep finds these sagas and has them settled, in one of two ways.

- By a reset, for any saga with no code of its own for it: the sweep asks Temporal's
  visibility for the runs of saga types (workflows that keep the SagaStatus search
  attribute, but the sweep and the repairs) that closed terminated, timed out or failed
  within `closed_within_seconds`, and resets the latest run of each (`SagaRuns.reset_saga_run`)
  to its last completed workflow task, then requests the new run's cancellation. The new
  run replays the saga's own code: before the pivot the cancellation stops the steps and the
  compensations the run had registered run, with the arguments it gave them; from the pivot
  on it is ignored and the saga's code goes forward. The sweep waits up to `wait_seconds`
  for the new run (`SagaRuns.await_saga_run`) and reports what became of it. A run still
  running is never touched, nor one that completed (reset or not), nor one the sweep made by
  a reset (a run whose code fails again is reported once, by the sweep that reset it).
- By the saga's own *finder* and *repair* (`SweepRequest.own_repairs`), for a saga whose
  steps may leave effects no event records (local-first steps: a local activity's effect in
  a workflow task that never completed): asks the finder activity for its sagas with
  records open since before now minus `older_than_seconds`, and Temporal for the saga type's
  runs that closed without finishing within `closed_within_seconds` (a run terminated after
  its last record was settled, say after the pivot but before its announcement, leaves no
  record open); asks Temporal about the latest run of each (`SagaRuns.describe_saga_run`);
  leaves alone every saga whose run is still running (it settles its records itself) or
  completed (its code ran to the end: what it left open, an operator left so, by skipping a
  compensation), and for every other one (terminated, timed out, failed, missing) starts the
  saga's repair workflow (id `repair-{workflow_id}`, abandoned: it outlives the sweep),
  waiting for it up to `wait_seconds`; a closed run with no record open is repaired once.

`SagaSweepWorkflow` ("SagaSweep") is one sweep; its report says what it did for each saga
(or would do, dry run). It runs on a Temporal Schedule (engine/temporal_saga/client.py
`ensure_sweep_schedule`), or now (`sweep_now`). `SagaRepair` is the base of a saga's repair
workflow: its actions go through `settle`, which runs each as a compensation runs (retried
with backoff; stuck: NEEDS_ATTENTION until an operator retries or skips it, with the same
updates and `status` query as every saga), so what a repair cannot settle is in the
operators' attention list like any stuck saga.
"""

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ActivityError, WorkflowAlreadyStartedError

from temporal_saga.compensations import (
    CompensationPolicy,
    Compensations,
    Phase,
    run_to_completion,
)
from temporal_saga.metrics import count
from temporal_saga.search import SAGA_STATUS, SAGA_STEP
from temporal_saga.steps import STEP_TIMEOUT

with workflow.unsafe.imports_passed_through():
    from temporal_saga.failures import read_failure
    from temporal_saga.models import (
        AbandonedSaga,
        AwaitRun,
        ClosedSaga,
        CompensationState,
        FindClosedRuns,
        FindOpenSagas,
        OpenSaga,
        OwnRepair,
        RepairResult,
        ResetOutcome,
        ResetRun,
        RunStatus,
        SagaProgress,
        SagaReset,
        SagaResult,
        SagaRun,
        SagaStatus,
        SkipCompensation,
        SweepAction,
        SweepEntry,
        SweepReport,
        SweepRequest,
    )
    from temporal_saga.options import COMPENSATION_RETRY
    from temporal_saga.runs import REPAIR_PREFIX, RESET_REASON_PREFIX, SagaRuns

R = TypeVar("R")

SWEEP_WORKFLOW = "SagaSweep"
# What a saga found by its closed run (and no record open) is listed with.
CLOSED_RUN = "run closed without finishing"
SWEPT = "saga_swept"
RESET = "saga_reset"
REPAIRED = "saga_repaired"
NEEDS_ATTENTION = "saga_needs_attention"
# Every saga, of any type, that waits for an operator.
NEEDS_ATTENTION_QUERY = f"{SAGA_STATUS.name} = 'NEEDS_ATTENTION' AND ExecutionStatus = 'Running'"
# The finder and Temporal are asked with a few quick retries: a sweep that fails is retried
# by the next one, and shows up as a failed workflow (an alert, docs/operations.md).
LOOKUP_TIMEOUT = timedelta(seconds=30)
LOOKUP_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=5,
)
# A wait for a reset run heartbeats every few seconds (runs.AWAIT_HEARTBEAT_SECONDS).
AWAIT_HEARTBEAT_TIMEOUT = timedelta(seconds=20)


def repair_workflow_id(workflow_id: str) -> str:
    """One repair at a time per saga; a later sweep may start another once it is done."""
    return f"{REPAIR_PREFIX}{workflow_id}"


def reset_reason(sweep_id: str, run: SagaRun) -> str:
    """The reason of a reset the sweep makes: in the new run's history and the Web UI."""
    return (
        f"{RESET_REASON_PREFIX} {sweep_id}: the run ended {run.status.value}; reset to its "
        "last completed workflow task and cancelled, to compensate before the pivot or go "
        "on after it"
    )


@workflow.defn(name=SWEEP_WORKFLOW)
class SagaSweepWorkflow:
    @workflow.run
    async def run(self, request: SweepRequest) -> SweepReport:
        before = workflow.now() - timedelta(seconds=request.older_than_seconds)
        owns = request.swept_own_repairs
        report = SweepReport(
            finder=owns[0].finder if owns else None,
            finders=[own.finder for own in owns],
            saga_type=request.saga_type,
            before=before,
            dry_run=request.dry_run,
        )
        repairs: dict[str, workflow.ChildWorkflowHandle[Any, RepairResult]] = {}
        for own in owns:
            await self._sweep_own(request, own, before, report, repairs)
        resets = await self._ended_sagas(request, report) if request.resets else []
        await asyncio.gather(
            self._wait_for_repairs(request, repairs),
            *(self._reset(request, entry, run) for entry, run in resets),
        )
        for entry in report.entries:
            handle = repairs.get(entry.workflow_id)
            if handle is not None and handle.done() and handle.exception() is None:
                entry.action = SweepAction.REPAIRED
                entry.repair = handle.result()
            count(SWEPT, "sagas a sweep looked at, by what it did", action=entry.action.value)
            if entry.reset is not None:
                count(
                    RESET,
                    "sagas a sweep reset, by what became of them",
                    outcome=entry.reset.outcome.value,
                )
        # The alert "a saga waits for an operator too long" reads this (docs/operations.md).
        waiting = await workflow.execute_activity_method(
            SagaRuns.count_needing_attention,
            NEEDS_ATTENTION_QUERY,
            start_to_close_timeout=LOOKUP_TIMEOUT,
            retry_policy=LOOKUP_RETRY,
        )
        workflow.metric_meter().create_gauge(
            NEEDS_ATTENTION, "sagas waiting in NEEDS_ATTENTION, at the last sweep"
        ).set(waiting)
        workflow.logger.info(
            "sweep of %s: %d saga(s) looked at, %d repaired, %d reset, %d left running",
            request.saga_type or "every saga type",
            len(report.entries),
            report.count(SweepAction.REPAIRED),
            report.count(SweepAction.RESET),
            report.count(SweepAction.LEFT_RUNNING),
        )
        return report

    # -- sagas with a finder and a repair of their own ---------------------------------------

    async def _sweep_own(
        self,
        request: SweepRequest,
        own: OwnRepair,
        before: datetime,
        report: SweepReport,
        repairs: dict[str, "workflow.ChildWorkflowHandle[Any, RepairResult]"],
    ) -> None:
        found: list[OpenSaga] = await workflow.execute_activity(
            own.finder,
            FindOpenSagas(before=before, limit=request.limit),
            result_type=list[OpenSaga],
            task_queue=own.task_queue,
            start_to_close_timeout=LOOKUP_TIMEOUT,
            retry_policy=LOOKUP_RETRY,
        )
        found += await self._closed_without_records(request, own, {s.workflow_id for s in found})
        runs = await asyncio.gather(*(self._latest_run(saga.workflow_id) for saga in found))
        for saga, run in zip(found, runs, strict=True):
            entry = SweepEntry(
                workflow_id=saga.workflow_id,
                saga_type=own.saga_type,
                run_status=run.status,
                records=saga.records,
                action=SweepAction.LEFT_RUNNING,
            )
            report.entries.append(entry)
            if run.status is RunStatus.RUNNING:
                continue
            if run.status is RunStatus.COMPLETED:
                entry.action = SweepAction.LEFT_COMPLETED
                if saga.records == [CLOSED_RUN]:
                    report.entries.remove(entry)  # reset away from: its new run finished it
                continue
            if request.dry_run:
                entry.action = SweepAction.WOULD_REPAIR
                continue
            entry.action = SweepAction.REPAIRING
            entry.repair_workflow_id = repair_workflow_id(saga.workflow_id)
            handle = await self._start_repair(own, saga, run, entry.repair_workflow_id)
            if handle is not None:
                repairs[saga.workflow_id] = handle

    async def _closed_without_records(
        self, request: SweepRequest, own: OwnRepair, with_records: set[str]
    ) -> list[OpenSaga]:
        """Runs that closed without finishing and have no record open: those not repaired
        yet (their repair's latest run is not COMPLETED)."""
        closed_after = workflow.now() - timedelta(seconds=request.closed_within_seconds)
        closed: list[str] = await workflow.execute_activity_method(
            SagaRuns.closed_saga_runs,
            FindClosedRuns(
                workflow_type=own.saga_type, closed_after=closed_after, limit=request.limit
            ),
            start_to_close_timeout=LOOKUP_TIMEOUT,
            retry_policy=LOOKUP_RETRY,
        )
        candidates = [w for w in closed if w not in with_records]
        repairs = await asyncio.gather(
            *(self._latest_run(repair_workflow_id(w)) for w in candidates)
        )
        return [
            OpenSaga(workflow_id=w, records=[CLOSED_RUN], opened_at=closed_after)
            for w, repair in zip(candidates, repairs, strict=True)
            if repair.status is not RunStatus.COMPLETED
        ]

    async def _latest_run(self, workflow_id: str) -> SagaRun:
        return await workflow.execute_activity_method(
            SagaRuns.describe_saga_run,
            workflow_id,
            start_to_close_timeout=LOOKUP_TIMEOUT,
            retry_policy=LOOKUP_RETRY,
        )

    async def _start_repair(
        self, own: OwnRepair, saga: OpenSaga, run: SagaRun, repair_id: str
    ) -> "workflow.ChildWorkflowHandle[Any, RepairResult] | None":
        try:
            return await workflow.start_child_workflow(
                own.repair,
                AbandonedSaga(workflow_id=saga.workflow_id, run=run, records=saga.records),
                id=repair_id,
                task_queue=own.task_queue,
                result_type=RepairResult,
                parent_close_policy=workflow.ParentClosePolicy.ABANDON,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            )
        except WorkflowAlreadyStartedError:
            return None  # a repair of this saga is running already (an earlier sweep's)

    async def _wait_for_repairs(
        self,
        request: SweepRequest,
        repairs: dict[str, "workflow.ChildWorkflowHandle[Any, RepairResult]"],
    ) -> None:
        if repairs:
            await workflow.wait(list(repairs.values()), timeout=request.wait_seconds)

    # -- every other saga: a reset of its ended run ------------------------------------------

    async def _ended_sagas(
        self, request: SweepRequest, report: SweepReport
    ) -> list[tuple[SweepEntry, SagaRun]]:
        """The sagas (but those with their own repair) found by a run that closed without
        finishing, reported; those to reset, with their latest run."""
        own_types = [t for own in request.own_repairs for t in (own.saga_type, own.repair)]
        found: list[ClosedSaga] = await workflow.execute_activity_method(
            SagaRuns.closed_sagas,
            FindClosedRuns(
                workflow_type=request.saga_type,
                sagas_only=True,
                exclude_types=[SWEEP_WORKFLOW, *own_types],
                closed_after=workflow.now() - timedelta(seconds=request.closed_within_seconds),
                limit=request.limit,
            ),
            start_to_close_timeout=LOOKUP_TIMEOUT,
            retry_policy=LOOKUP_RETRY,
        )
        to_reset = []
        for saga in found:
            entry = SweepEntry(
                workflow_id=saga.workflow_id,
                saga_type=saga.run.workflow_type,
                run_status=saga.run.status,
                records=[CLOSED_RUN],
                action=SweepAction.LEFT_RUNNING,
            )
            report.entries.append(entry)
            if saga.run.run_id is None:
                continue
            if saga.run.status is RunStatus.RUNNING and not saga.cancel_pending:
                continue
            if request.dry_run:
                entry.action = SweepAction.WOULD_RESET
                continue
            entry.action = SweepAction.RESET
            to_reset.append((entry, saga.run))
        return to_reset

    async def _reset(self, request: SweepRequest, entry: SweepEntry, run: SagaRun) -> None:
        """Reset the run (unless it is one the sweep made, running, still to cancel), cancel
        the new one once it has caught up, wait for it: `entry.reset` says how it went."""
        assert run.run_id is not None
        reset = SagaReset(outcome=ResetOutcome.STILL_RUNNING, run_id=run.run_id)
        # Temporal could not be asked (the activity's retries ran out): reported; the next
        # sweep finds the saga as it left it and goes on from there.
        if run.status is not RunStatus.RUNNING:
            try:
                reset = await workflow.execute_activity_method(
                    SagaRuns.reset_saga_run,
                    ResetRun(
                        workflow_id=run.workflow_id,
                        run_id=run.run_id,
                        reason=reset_reason(workflow.info().workflow_id, run),
                    ),
                    start_to_close_timeout=LOOKUP_TIMEOUT,
                    retry_policy=LOOKUP_RETRY,
                )
            except ActivityError as err:
                reset = SagaReset(outcome=ResetOutcome.NOT_RESET, detail=read_failure(err).words)
        if reset.run_id is not None:
            try:
                reset = await workflow.execute_activity_method(
                    SagaRuns.await_saga_run,
                    AwaitRun(
                        workflow_id=run.workflow_id,
                        run_id=reset.run_id,
                        wait_seconds=request.wait_seconds,
                    ),
                    start_to_close_timeout=timedelta(seconds=request.wait_seconds) + LOOKUP_TIMEOUT,
                    heartbeat_timeout=AWAIT_HEARTBEAT_TIMEOUT,
                    retry_policy=LOOKUP_RETRY,
                )
            except ActivityError as err:
                reset.detail = f"not waited for: {read_failure(err).words}"
        entry.reset = reset


class SagaRepair:
    """The base of a saga's repair workflow: `settle` its actions, report what it did.

    Its subclass (`@workflow.defn`) writes an `@workflow.run` taking an AbandonedSaga that
    returns `await self.run_repair(self.<its repair>(abandoned))`.
    """

    def __init__(self, abandoned: AbandonedSaga, policy: CompensationPolicy | None = None) -> None:
        self.abandoned = abandoned
        self._actions = Compensations(
            policy=policy or CompensationPolicy(), on_change=self._publish
        )
        self._current: str | None = None
        self._done = False
        self._published: tuple[str, str] | None = None

    async def settle(
        self,
        name: str,
        activity: Callable[..., Awaitable[R]],
        arg: object,
        *,
        start_to_close_timeout: timedelta = STEP_TIMEOUT,
        retry_policy: RetryPolicy = COMPENSATION_RETRY,
    ) -> R | None:
        """Run `activity(arg)` until it is done (None when an operator skipped it)."""
        results: list[R] = []
        call: Any = activity

        async def attempt() -> None:
            results.append(
                await workflow.execute_activity(
                    call,
                    arg,
                    start_to_close_timeout=start_to_close_timeout,
                    retry_policy=retry_policy,
                )
            )

        self._current = name
        self._publish()
        done = await self._actions.settle(name, attempt)
        return results[-1] if done else None

    @property
    def actions_done(self) -> list[str]:
        return list(reversed(self._actions.done))

    @property
    def actions_skipped(self) -> list[str]:
        return [
            r.name for r in reversed(self._actions.reports) if r.state is CompensationState.SKIPPED
        ]

    async def run_repair(self, repair: Coroutine[Any, Any, RepairResult]) -> RepairResult:
        """Run the repair to the end (a cancel does not stop it: it is the last word on the
        saga's records), and count it."""
        self._publish()
        result = await run_to_completion(repair)
        self._done = True
        self._publish()
        count(REPAIRED, "sagas repaired after their run ended, by outcome", outcome=result.outcome)
        await run_to_completion(workflow.wait_condition(workflow.all_handlers_finished))
        return result

    def _status(self) -> SagaStatus:
        if self._actions.phase is Phase.NEEDS_ATTENTION:
            return SagaStatus.NEEDS_ATTENTION
        return SagaStatus.REPAIRED if self._done else SagaStatus.RUNNING

    def _publish(self) -> None:
        current = (self._status().value, self._current or "")
        if current != self._published:
            self._published = current
            workflow.upsert_search_attributes(
                [SAGA_STATUS.value_set(current[0]), SAGA_STEP.value_set(current[1])]
            )

    @workflow.query
    def status(self) -> SagaProgress[SagaResult]:
        """Where the repair is: its actions (as compensations), what is stuck."""
        return SagaProgress[SagaResult].model_validate(
            {
                "status": self._status(),
                "current_step": self._current,
                "steps_done": self.actions_done,
                "compensations": [r.model_copy() for r in reversed(self._actions.reports)],
                "stuck": self._actions.stuck,
                "repairs": self.abandoned.workflow_id,
            }
        )

    @workflow.update
    def retry_compensation(self, name: str | None = None) -> str:
        """Operator: try a stuck action again; returns its name."""
        return self._actions.retry(name)

    @retry_compensation.validator
    def _validate_retry(self, name: str | None = None) -> None:
        self._actions.validate_retry(name)

    @workflow.update
    def skip_compensation(self, request: SkipCompensation) -> str:
        """Operator: give up on a stuck action (done by hand), with the reason."""
        return self._actions.skip(request.reason, request.name)

    @skip_compensation.validator
    def _validate_skip(self, request: SkipCompensation) -> None:
        self._actions.validate_skip(request.reason, request.name)
