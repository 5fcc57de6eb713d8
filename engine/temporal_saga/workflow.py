"""The saga engine: a workflow class declares its steps, and gets everything else from here.

    @workflow.defn(name="Transfer")
    class TransferWorkflow(SagaWorkflow[Request, SagaResult]):
        withdraw = Step(Bank.withdraw, undo=Bank.deposit_back)
        deposit = Step(Bank.deposit, pivot=True)

        @workflow.init
        def __init__(self, request: Request) -> None:
            super().__init__(request, SagaOptions(deadline=timedelta(minutes=2)))

        @workflow.run
        async def run(self, request: Request) -> Result:
            return await self.run_saga(self.transfer(request))

        async def transfer(self, request: Request) -> None:
            await self.withdraw(request.debit)
            await self.deposit(request.credit)

(examples/ holds a whole saga written this way.) The result type is SagaResult, or a
subclass with the saga's own fields: each is filled from the input's attribute of the same
name, or from `result_fields()`, and the `status` query carries them too.

What every saga gets:

- `decision` (update): the answer as soon as it is known: CONFIRMED once the pivot
  succeeded, REJECTED once a step failed for good; made for update-with-start.
- `cancel` (update): before the pivot, stop and compensate; refused from the pivot on, with
  the reason. A Temporal cancellation of the workflow does the same (and is ignored from
  the pivot on: what follows the pivot only goes forward).
- a soft deadline (`SagaOptions.deadline`): not past the pivot by then, compensate.
- `retry_compensation` / `skip_compensation` (updates, validated): an operator's way out of
  NEEDS_ATTENTION; a request that names no stuck compensation is refused with the stuck names.
- `status` (query): status, current step, steps done, each compensation's state, attempts
  and last error, what is stuck, the decision, plus the saga's own fields.
- the search attributes `SagaStatus` and `SagaStep` (and the saga's own), one upsert per
  change; the counters of engine/temporal_saga/metrics.py.

What runs after the pivot is forward only (retried until done); what runs after the
compensations (`after_compensations`) announces the rejection, say. A broken declaration
fails when the class is made; a step run against the rules fails the workflow with a
SagaMisuse error, after compensating when the pivot was not reached.
"""

import asyncio
import inspect
from collections.abc import Callable, Coroutine, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, cast, get_args, get_origin

from temporalio import workflow
from temporalio.exceptions import ApplicationError, FailureError, is_cancelled_exception

from temporal_saga.compensations import (
    Compensations,
    Phase,
    run_to_completion,
)
from temporal_saga.failures import read_failure
from temporal_saga.local import execute_local_first
from temporal_saga.metrics import (
    count_compensation_run,
    count_confirmed,
    count_rejected,
)
from temporal_saga.search import SAGA_STATUS, SAGA_STEP
from temporal_saga.steps import (
    FOREVER_RETRY,
    STEP_RETRY,
    SagaDefinitionError,
    SagaFailure,
    SagaMisuse,
    Step,
    StepNamespace,
    declared_steps,
)

with workflow.unsafe.imports_passed_through():
    from temporal_saga.models import (
        CancelSaga,
        CompensationState,
        Outcome,
        SagaProgress,
        SagaResult,
        SagaStatus,
        SkipCompensation,
    )
    from temporal_saga.options import COMPENSATION_RETRY as COMPENSATION_RETRY
    from temporal_saga.options import SagaOptions as SagaOptions

InputT = TypeVar("InputT")
ResultT = TypeVar("ResultT", bound=SagaResult)
T = TypeVar("T")

# The reason codes of the engine's own stops.
CANCELLED = "cancelled"
DEADLINE_EXCEEDED = "deadline_exceeded"
MISUSE = "saga_misuse"


class _SagaClass(type):
    """Makes a saga's class body refuse a step name given twice (StepNamespace)."""

    @classmethod
    def __prepare__(mcs, name: str, bases: tuple[type, ...], /, **kwargs: Any) -> StepNamespace:
        return StepNamespace()


class SagaWorkflow(Generic[InputT, ResultT], metaclass=_SagaClass):
    """The base of a saga workflow: `SagaWorkflow[Input, Result]`, Result being SagaResult or
    a subclass with the saga's own fields. Its subclass declares `Step`s as class attributes,
    an `@workflow.init` that passes the input and options here, and an `@workflow.run` that
    returns `await self.run_saga(self.<its steps>(input))`."""

    # Read-only: this module is passed through the sandbox, so the class outlives each run.
    _steps: ClassVar[Mapping[str, Step[Any, Any, Any]]] = MappingProxyType({})
    _result_type: ClassVar[type[SagaResult]] = SagaResult
    _progress_type: ClassVar[type[SagaProgress[Any]]] = SagaProgress[SagaResult]
    # The result's own fields (beyond SagaResult's) that the input provides, by name.
    _from_input: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._steps = MappingProxyType(declared_steps(cls, reserved=_RESERVED))
        types = _saga_types(cls)
        if types is not None:
            input_type, cls._result_type = types
            cls._progress_type = SagaProgress[cls._result_type]  # type: ignore[name-defined]
            cls._from_input = _own_fields_from_input(cls, input_type, cls._result_type)
        _default_init(cls)

    @classmethod
    def saga_steps(cls) -> Mapping[str, Step[Any, Any, Any]]:
        """The saga's steps, by name, in the order declared."""
        return cls._steps

    def __init__(self, input: InputT, options: SagaOptions | None = None) -> None:
        self.input = input
        self.options = options or SagaOptions()
        self._compensations = Compensations(
            policy=self.options.compensation, on_change=self._publish
        )
        self._current_step: str | None = None
        self._steps_done: list[str] = []
        self._started: set[str] = set()
        self._pivot_started = False
        self._past_pivot = False
        self._stop: SagaFailure | None = None
        self._failure: SagaFailure | None = None
        self._steps_task: asyncio.Future[object] | None = None
        self._decision: ResultT | None = None
        self._published: tuple[str, str] | None = None

    # -- what a saga may override ----------------------------------------------------------

    def reason(self, code: str, detail: str) -> str:
        """The words of the answer for a rejection with `code` (default: the detail)."""
        return detail

    def result_fields(self) -> Mapping[str, object]:
        """The saga's own fields of its result (and of its `status`) that its input does not
        hold under the same name; the input's fill the rest."""
        return {}

    async def after_compensations(self, result: ResultT) -> None:
        """Runs once the compensations are done, before the workflow returns `result` (to
        announce the rejection, say). It cannot be cancelled."""

    # -- the run -----------------------------------------------------------------------------

    async def run_saga(self, steps: Coroutine[Any, Any, object]) -> ResultT:
        """Run `steps` (the saga's own coroutine, which calls its steps) under the saga's
        rules; returns the final result, once the work after the decision is done."""
        self._publish()
        failure: SagaFailure | None = self._stop  # cancelled before it started
        misuse: SagaMisuse | None = None
        if failure is not None:
            steps.close()
        else:
            self._steps_task = asyncio.ensure_future(steps)
            deadline = asyncio.ensure_future(self._enforce_deadline())
            try:
                await self._until_settled(self._steps_task)
            finally:
                deadline.cancel()
            failure, misuse = self._failure_of(self._steps_task)
        if failure is None:
            if self._decision is None:  # a saga without a pivot decides when its steps end
                self._decide(Outcome.CONFIRMED)
            final = self._result(Outcome.CONFIRMED)
        else:
            final = await run_to_completion(self._reject(failure))
        self._publish()
        await run_to_completion(workflow.wait_condition(workflow.all_handlers_finished))
        if misuse is not None:
            raise misuse
        return final

    async def _until_settled(self, task: "asyncio.Future[object]") -> None:
        """Wait for the steps to end. A Temporal cancellation before the pivot stops them as
        the cancel update does; from the pivot on it is ignored."""
        while not task.done():
            try:
                await workflow.wait([task])
            except asyncio.CancelledError:
                if not self._pivot_started:
                    self._stop = self._stop or SagaFailure(
                        self._current_step, CANCELLED, "the workflow was cancelled"
                    )
                    task.cancel()

    def _failure_of(
        self, task: "asyncio.Future[object]"
    ) -> tuple[SagaFailure | None, SagaMisuse | None]:
        if task.cancelled():
            return self._stopped(), None
        err = task.exception()
        if err is None:
            return None, None
        if self._past_pivot:
            raise err  # nothing to undo: the workflow fails (or, for a bug, its task retries)
        if isinstance(err, SagaMisuse):
            return SagaFailure(self._current_step, MISUSE, err.message), err
        if is_cancelled_exception(err):
            return self._stopped(), None
        if isinstance(err, FailureError):
            code, detail = read_failure(err).reason
            return SagaFailure(self._current_step, code, detail), None
        raise err  # a bug in the saga's own code: its workflow task fails until a fix is deployed

    def _stopped(self) -> SagaFailure:
        return self._stop or SagaFailure(
            self._current_step, CANCELLED, "the workflow was cancelled"
        )

    async def _enforce_deadline(self) -> None:
        if self.options.deadline is None:
            return
        await workflow.sleep(self.options.deadline)
        if not self._pivot_started and self._steps_task is not None:
            self._stop = SagaFailure(
                self._current_step, DEADLINE_EXCEEDED, "not confirmed within the deadline"
            )
            self._steps_task.cancel()

    async def _run_step(self, step: Step[Any, T, Any], arg: object, undo_arg: object) -> T:
        self._check_may_run(step, arg, undo_arg)
        if undo_arg is None:
            undo_arg = arg
        self._started.add(step.name)
        if step.undo is not None and step.undo_name is not None:
            self._compensations.add(step.undo_name, self._compensation(step, undo_arg))
        if step.pivot:
            self._pivot_started = True
        self._current_step = step.name
        self._publish()
        result = await self._execute(step, arg)
        self._steps_done.append(step.name)
        if step.pivot:
            self._past_pivot = True
            self._decide(Outcome.CONFIRMED)
            self._publish()
        return result

    def _check_may_run(self, step: Step[Any, Any, Any], arg: object, undo_arg: object) -> None:
        if self._steps.get(step.name) is not step:
            raise SagaMisuse(f"step {step.name!r} is not a step of {type(self).__name__}")
        if step.name in self._started:
            raise SagaMisuse(f"step {step.name!r} ran twice: each step runs once")
        if step.undo is not None and self._pivot_started:
            raise SagaMisuse(
                f"step {step.name!r} has an undo and ran after the pivot: nothing is undone "
                "once the pivot started"
            )
        if step.undo is None and undo_arg is not None:
            raise SagaMisuse(f"step {step.name!r} has no undo, so it takes no undo_arg")
        wanted = step.undo_arg_type
        if undo_arg is None and wanted is not None and not isinstance(arg, wanted):
            raise SagaMisuse(
                f"step {step.name!r}: its undo {step.undo_name!r} takes {wanted.__name__}, "
                f"and the step's argument (which it gets by default) is "
                f"{type(arg).__name__}: pass its argument with undo_arg="
            )

    async def _execute(self, step: Step[Any, T, Any], arg: object) -> T:
        forward_only = step.pivot or self._past_pivot
        policy = step.retry_policy or (FOREVER_RETRY if forward_only else STEP_RETRY)
        if step.local_first:
            return await execute_local_first(
                step.activity,
                arg,
                start_to_close_timeout=step.start_to_close_timeout,
                retry_policy=policy,
                heartbeat_timeout=step.heartbeat_timeout,
                task_queue=step.task_queue,
                priority=step.priority,
            )
        activity: Any = step.activity
        result: T = await workflow.execute_activity(
            activity,
            arg,
            start_to_close_timeout=step.start_to_close_timeout,
            retry_policy=policy,
            heartbeat_timeout=step.heartbeat_timeout,
            task_queue=step.task_queue,
            priority=step.priority,
        )
        return result

    def _compensation(
        self, step: Step[Any, Any, Any], undo_arg: object
    ) -> Callable[[], Coroutine[Any, Any, object]]:
        undo: Any = step.undo

        async def compensate() -> object:
            failure = self._failure or SagaFailure(step.name, CANCELLED, "compensating")
            arg = undo_arg(failure) if callable(undo_arg) else undo_arg
            return await workflow.execute_activity(
                undo,
                arg,
                start_to_close_timeout=step.start_to_close_timeout,
                retry_policy=self.options.compensation_retry,
                heartbeat_timeout=step.heartbeat_timeout,
                task_queue=step.task_queue,
            )

        return compensate

    def _decide(self, outcome: Outcome) -> None:
        self._decision = self._result(outcome)
        if outcome is Outcome.CONFIRMED:
            count_confirmed()
            workflow.logger.info("saga decided: CONFIRMED")

    async def _reject(self, failure: SagaFailure) -> ResultT:
        self._failure = failure
        self._decision = self._result(Outcome.REJECTED)
        count_rejected(failure.code)
        workflow.logger.info(
            "saga decided: REJECTED (%s at %s)", failure.code, failure.step or "start"
        )
        self._compensations.start()
        self._publish()
        await self._compensations.run()
        for report in self._compensations.reports:
            if report.state is CompensationState.DONE:
                count_compensation_run(report.name)
        result = self._result(Outcome.REJECTED)
        await self.after_compensations(result)
        return result

    # -- what callers and operators see and do (the handlers call these) ---------------------

    async def _wait_for_decision(self) -> ResultT:
        await workflow.wait_condition(lambda: self._decision is not None)
        assert self._decision is not None
        return self._decision

    async def _cancel(self, request: CancelSaga) -> ResultT:
        if self._stop is None:  # a repeated cancel keeps the first reason
            self._stop = SagaFailure(self._current_step, CANCELLED, request.reason)
        if self._steps_task is not None:
            self._steps_task.cancel()
        return await self._wait_for_decision()

    def _progress(self) -> SagaProgress[ResultT]:
        fields = {
            "status": self._status(),
            "current_step": self._current_step,
            "steps_done": list(self._steps_done),
            "compensations": self._reports(),
            "stuck": self._compensations.stuck,
            "decision": self._decision,
            **self._own_fields(),
        }
        return cast(SagaProgress[ResultT], self._progress_type.model_validate(fields))

    # -- helpers -----------------------------------------------------------------------------

    def _status(self) -> SagaStatus:
        phase = self._compensations.phase
        if phase is Phase.NEEDS_ATTENTION:
            return SagaStatus.NEEDS_ATTENTION
        if phase is Phase.RUNNING:
            return SagaStatus.COMPENSATING
        if self._decision is not None:
            return SagaStatus(self._decision.status.value)
        return SagaStatus.RUNNING

    def _publish(self) -> None:
        """Keep the search attributes current (one upsert per change), so the Web UI and the
        operator commands can list sagas by them."""
        current = (self._status().value, self._current_step or "")
        if current == self._published:
            return
        first = self._published is None
        self._published = current
        workflow.upsert_search_attributes(
            [
                SAGA_STATUS.value_set(current[0]),
                SAGA_STEP.value_set(current[1]),
                *(self.options.search_attributes if first else ()),
            ]
        )

    def _reports(self) -> list[Any]:
        if self._compensations.phase is Phase.NOT_STARTED:
            return []
        return [report.model_copy() for report in self._compensations.reports]

    def _result(self, outcome: Outcome) -> ResultT:
        failure = self._failure if outcome is Outcome.REJECTED else None
        fields = {
            "status": outcome,
            "failed_step": failure.step if failure else None,
            "reason_code": failure.code if failure else None,
            "reason": self.reason(failure.code, failure.detail) if failure else None,
            "steps_done": list(self._steps_done),
            "compensations_done": self._compensations.done,
            "compensations": self._reports(),
            **self._own_fields(),
        }
        return cast(ResultT, self._result_type.model_validate(fields))

    def _own_fields(self) -> dict[str, object]:
        return {
            **{name: getattr(self.input, name) for name in self._from_input},
            **self.result_fields(),
        }

    if TYPE_CHECKING:
        # Each saga's own, with @workflow.run (for the client's start of `run`).
        async def run(self, input: InputT) -> ResultT: ...

    # -- the handlers every saga gets (a subclass's @workflow.defn collects them) --------------

    @workflow.update
    async def decision(self) -> ResultT:
        """The answer, as soon as it is known (use with update-with-start)."""
        return await self._wait_for_decision()

    @workflow.update
    async def cancel(self, request: CancelSaga) -> ResultT:
        """Stop before the pivot and compensate; the answer (REJECTED, cancelled)."""
        return await self._cancel(request)

    @cancel.validator
    def _validate_cancel(self, request: CancelSaga) -> None:
        if self._pivot_started or self._decision is not None:
            raise ApplicationError(
                "too late to cancel: the saga has already reached its decision "
                f"({self._decision.status if self._decision else 'confirming'})",
                type="TooLateToCancel",
            )

    @workflow.update
    def retry_compensation(self, name: str | None = None) -> str:
        """Operator: try a stuck compensation again; returns its name."""
        return self._compensations.retry(name)

    @retry_compensation.validator
    def _validate_retry(self, name: str | None = None) -> None:
        self._compensations.validate_retry(name)

    @workflow.update
    def skip_compensation(self, request: SkipCompensation) -> str:
        """Operator: give up on a stuck compensation, with the reason; returns its name."""
        return self._compensations.skip(request.reason, request.name)

    @skip_compensation.validator
    def _validate_skip(self, request: SkipCompensation) -> None:
        self._compensations.validate_skip(request.reason, request.name)

    @workflow.query
    def status(self) -> SagaProgress[ResultT]:
        """Where the saga is: status, steps, compensations, the decision, its own fields."""
        return self._progress()


def _default_init(cls: type[SagaWorkflow[Any, Any]]) -> None:
    """A saga whose class runs (`@workflow.run`) and has no `@workflow.init` of its own gets
    one that passes its input with the default SagaOptions: without it Temporal would make
    the workflow with no arguments, and every workflow task of the run would fail."""
    run = next((fn for fn in vars(cls).values() if hasattr(fn, "__temporal_workflow_run")), None)
    if run is None or any(
        hasattr(vars(klass).get("__init__"), "__temporal_workflow_init")
        for klass in cls.__mro__
        if klass is not SagaWorkflow
    ):
        return

    def __init__(self: SagaWorkflow[Any, Any], *input: Any) -> None:
        SagaWorkflow.__init__(self, *input)

    __init__.__signature__ = inspect.signature(run)  # type: ignore[attr-defined]
    __init__.__qualname__ = f"{cls.__qualname__}.__init__"
    cls.__init__ = workflow.init(__init__)  # type: ignore[method-assign, assignment]


# Names a step may not take: the saga's own (a step would hide them).
_RESERVED = frozenset(vars(SagaWorkflow)) | {"input", "options"}


def _saga_types(cls: type) -> tuple[Any, type[SagaResult]] | None:
    """The input and result types the class gave SagaWorkflow (None while the result is
    still a type variable, in a generic subclass)."""
    for klass in cls.__mro__:
        for base in getattr(klass, "__orig_bases__", ()):
            if get_origin(base) is SagaWorkflow:
                input_type, result_type = get_args(base)
                if isinstance(result_type, type) and issubclass(result_type, SagaResult):
                    return input_type, result_type
                if isinstance(result_type, TypeVar):
                    return None
                raise SagaDefinitionError(
                    f"{cls.__qualname__}: its result type {result_type!r} is not SagaResult "
                    "or a subclass of it"
                )
    return None


def _own_fields_from_input(
    cls: type[SagaWorkflow[Any, Any]], input_type: object, result_type: type[SagaResult]
) -> tuple[str, ...]:
    """The result's own fields that the input holds under the same name. A required one it
    does not hold must come from `result_fields()`; a saga that does not override it is
    refused now, rather than on its first answer."""
    own = {n: f for n, f in result_type.model_fields.items() if n not in SagaResult.model_fields}
    held = _field_names(input_type)
    missing = [n for n, f in own.items() if f.is_required() and n not in held]
    if missing and cls.result_fields is SagaWorkflow.result_fields:
        raise SagaDefinitionError(
            f"{cls.__qualname__}: the field(s) {', '.join(missing)} of its result "
            f"{result_type.__name__} are provided by nothing: its input "
            f"{getattr(input_type, '__name__', input_type)} has no attribute of that name, "
            "and it does not override result_fields()"
        )
    return tuple(n for n in own if n in held)


def _field_names(input_type: object) -> set[str]:
    fields = getattr(input_type, "model_fields", None)  # pydantic
    if isinstance(fields, dict):
        return set(fields)
    dataclass_fields = getattr(input_type, "__dataclass_fields__", None)
    if isinstance(dataclass_fields, dict):
        return set(dataclass_fields)
    return set(getattr(input_type, "__annotations__", {}))
