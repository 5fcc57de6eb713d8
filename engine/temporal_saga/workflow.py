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
import contextlib
import inspect
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from datetime import timedelta
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
    count_step_done,
)
from temporal_saga.nested import (
    FINAL_NEWS_PATIENCE,
    FINAL_NEWS_RESEND_MAX,
    RESEND_EVERY,
    ChildRun,
    ChildSaga,
    child_rejected,
    final_outcome,
    parent_link,
    start_child,
    tell,
)
from temporal_saga.page import saga_page
from temporal_saga.search import SAGA_STATUS, SAGA_STEP
from temporal_saga.steps import (
    FOREVER_RETRY,
    STEP_RETRY,
    Group,
    SagaDefinitionError,
    SagaFailure,
    SagaMisuse,
    Step,
    StepCall,
    StepNamespace,
    declared_groups,
    declared_steps,
)

with workflow.unsafe.imports_passed_through():
    from temporal_saga.models import (
        CancelSaga,
        ChildNews,
        ChildSagaState,
        CompensationState,
        Outcome,
        ParentWord,
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
PARENT_COMPENSATED = "parent_compensated"
# The shortest timer: what it takes to close in a workflow task of its own.
CLOSING_TIMER = timedelta(milliseconds=1)


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
    _groups: ClassVar[Mapping[str, Group]] = MappingProxyType({})
    _result_type: ClassVar[type[SagaResult]] = SagaResult
    _progress_type: ClassVar[type[SagaProgress[Any]]] = SagaProgress[SagaResult]
    # The result's own fields (beyond SagaResult's) that the input provides, by name.
    _from_input: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._steps = MappingProxyType(declared_steps(cls, reserved=_RESERVED))
        cls._groups = MappingProxyType(declared_groups(cls, cls._steps, reserved=_RESERVED))
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

    @classmethod
    def saga_groups(cls) -> Mapping[str, Group]:
        """The saga's groups of steps that run together, by name, in the order declared."""
        return cls._groups

    def __init__(self, input: InputT, options: SagaOptions | None = None) -> None:
        self.input = input
        self.options = options or SagaOptions()
        self._compensations = Compensations(
            policy=self.options.compensation, on_change=self._publish
        )
        self._current_step: str | None = None
        self._running: list[str] = []
        self._steps_done: list[str] = []
        self._started: set[str] = set()
        self._pivot_started = False
        self._past_pivot = False
        self._stop: SagaFailure | None = None
        self._failure: SagaFailure | None = None
        self._steps_task: asyncio.Future[object] | None = None
        self._decision: ResultT | None = None
        self._published: tuple[str, str] | None = None
        # Nested sagas this saga started, by step; and, when it runs nested, its parent.
        self._children: dict[str, ChildRun] = {}
        self._parent: tuple[str, str] | None = None
        self._parent_word: ParentWord | None = None
        self._waiting_for_parent = False
        self._news_seq = 0
        self._news: list[asyncio.Future[bool]] = []
        self._parent_words = 0  # words heard from the parent, repeats included
        self._told_status: SagaStatus | None = None
        # The workflow task (by the history's length at its start) in which a local-first
        # step last ended.
        self._local_step_task: int | None = None

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

    async def run_saga(self, steps: Awaitable[object]) -> ResultT:
        """Run `steps` (the saga's own coroutine, which calls its steps) under the saga's
        rules; returns the final result, once the work after the decision is done."""
        self._parent = parent_link()
        self._publish()
        failure: SagaFailure | None = self._stop  # cancelled before it started
        misuse: SagaMisuse | None = None
        if failure is not None:
            if inspect.iscoroutine(steps):
                steps.close()
        else:
            self._steps_task = asyncio.ensure_future(steps)
            deadline = asyncio.ensure_future(self._enforce_deadline())
            try:
                await self._until_settled(self._steps_task)
            finally:
                deadline.cancel()
            failure, misuse = self._failure_of(self._steps_task)
        if failure is None and self._parent is not None:
            failure = await self._await_parent_word()
        if failure is None:
            if self._decision is None:  # a saga without a pivot decides when its steps end
                self._decide(Outcome.CONFIRMED)
                await run_to_completion(self._commit_children())
            final = self._result(Outcome.CONFIRMED)
        else:
            final = await run_to_completion(self._reject(failure))
        self._publish()
        if self._parent is not None:
            await run_to_completion(asyncio.gather(*self._news))
            await run_to_completion(self._tell_parent_until_taken(final))
        await run_to_completion(workflow.wait_condition(workflow.all_handlers_finished))
        await run_to_completion(self._close_after_local_steps())
        if misuse is not None:
            raise misuse
        return final

    async def _close_after_local_steps(self) -> None:
        """Close in a task of its own if a local-first step ended in this one. A completion
        that closes the workflow is refused when an event (a cancel request) arrived while
        the task ran, and the local activity's marker goes with it: the task runs again with
        that event, may stop before the step, and the step's effect is never undone
        (docs/reliability.md). A completion that does not close is taken, marker and all."""
        if self._local_step_task == workflow.info().get_current_history_length():
            await workflow.sleep(CLOSING_TIMER)

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
            # Stopped as its last step ended (in the same workflow task): the stop stands.
            return self._stop, None
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
        # What this workflow task resumed runs first (a step that completed in it starts the
        # next, and registers its undo): a run the reconciler reset does its old run's last
        # task again with the deadline long due, and must still do what that task did, or a
        # step the old run started would go without its undo (the simulation found it).
        await workflow.wait_condition(lambda: True)
        if not self._pivot_started and self._steps_task is not None:
            self._stop = SagaFailure(
                self._current_step, DEADLINE_EXCEEDED, "not confirmed within the deadline"
            )
            self._steps_task.cancel()

    async def _run_step(self, step: Step[Any, T, Any], arg: object, undo_arg: object) -> T:
        group = self._group_of(step)
        if group is not None:
            raise SagaMisuse(
                f"step {step.name!r} is a member of the group {group.name!r}: run it with its "
                f"group, self.{group.name}(...)"
            )
        self._stop_if_stopped()
        self._begin(step, arg, undo_arg)
        self._publish()
        return await self._perform(step, arg)

    def _stop_if_stopped(self) -> None:
        """No step starts once a stop (a cancel, the deadline, a parent's compensate) was
        taken. Cancelling the steps' task is not enough: when the step awaited completed in
        the same workflow task that took the stop, the activity's result wins over the
        cancellation and the steps' code goes on (the simulation found it)."""
        if self._stop is not None:
            raise asyncio.CancelledError(self._stop.detail)

    async def _run_group(self, group: Group, calls: Sequence[StepCall[Any]]) -> list[Any]:
        """Run a group's members together: every undo registered first, then all started;
        the first to fail for good cancels the rest (as a cancel stops a step: a request,
        not a wait, so the answer never waits on a call that does not heartbeat)."""
        given = sorted(call.step.name for call in calls)
        if self._groups.get(group.name) is not group or given != sorted(group.member_names):
            raise SagaMisuse(
                f"group {group.name!r} runs its members {', '.join(group.member_names)} "
                f"together, each once: it was given {', '.join(given) or 'nothing'}"
            )
        self._stop_if_stopped()
        for call in calls:
            self._begin(call.step, call.arg, call.undo_arg)
        self._publish()
        members = [asyncio.ensure_future(self._perform(call.step, call.arg)) for call in calls]
        try:
            await workflow.wait(members, return_when=asyncio.FIRST_EXCEPTION)
        except asyncio.CancelledError:
            await self._stop_members(members)
            raise
        failed = [
            (call, task)
            for call, task in zip(calls, members, strict=True)
            if task.done() and not task.cancelled() and task.exception() is not None
        ]
        if failed:
            await self._stop_members(members)
            call, task = failed[0]
            self._current_step = call.step.name  # the member that failed: failed_step
            err = task.exception()
            assert err is not None
            raise err
        return [task.result() for task in members]

    async def _stop_members(self, members: "Sequence[asyncio.Future[Any]]") -> None:
        """Cancel the members still running; each ends once its cancellation is sent."""
        for task in members:
            task.cancel()
        await run_to_completion(workflow.wait(members))
        for task in members:  # seen here: their cancellations are not errors to log
            if not task.cancelled():
                task.exception()

    def _begin(self, step: Step[Any, Any, Any], arg: object, undo_arg: object) -> None:
        """Check the step, register its undo, and count it as running."""
        self._check_may_run(step, arg, undo_arg)
        if undo_arg is None:
            undo_arg = arg
        self._started.add(step.name)
        if isinstance(step, ChildSaga):
            run = ChildRun(workflow_id=f"{workflow.info().workflow_id}/{step.name}")
            self._children[step.name] = run
            self._compensations.add(step.name, self._child_compensation(step, run))
        elif step.undo is not None and step.undo_name is not None:
            self._compensations.add(step.undo_name, self._compensation(step, undo_arg))
        if step.pivot:
            self._pivot_started = True
        self._current_step = step.name
        self._running.append(step.name)

    async def _perform(self, step: Step[Any, T, Any], arg: object) -> T:
        try:
            if isinstance(step, ChildSaga):
                result: T = await self._run_child(step, arg)
            else:
                result = await self._execute(step, arg)
        finally:
            self._running.remove(step.name)
        self._steps_done.append(step.name)
        count_step_done(step.name)
        if step.pivot:
            self._past_pivot = True
            self._decide(Outcome.CONFIRMED)
            self._publish()
            await run_to_completion(self._commit_children())
        else:
            self._publish()
        return result

    def _group_of(self, step: Step[Any, Any, Any]) -> Group | None:
        return next((g for g in self._groups.values() if step in g.members), None)

    def _check_may_run(self, step: Step[Any, Any, Any], arg: object, undo_arg: object) -> None:
        if self._steps.get(step.name) is not step:
            raise SagaMisuse(f"step {step.name!r} is not a step of {type(self).__name__}")
        if step.name in self._started:
            raise SagaMisuse(f"step {step.name!r} ran twice: each step runs once")
        if step.compensated and self._pivot_started:
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
        role = "pivot" if step.pivot else "forward step" if forward_only else "step"
        group = self._group_of(step)
        summary = f"{role} {step.name}" + (f" (group {group.name})" if group else "")
        options: dict[str, Any] = {
            "start_to_close_timeout": step.start_to_close_timeout,
            "retry_policy": policy,
            "heartbeat_timeout": step.heartbeat_timeout,
            "task_queue": step.task_queue,
            "priority": step.priority,
            "summary": summary,
        }
        if step.local_first:
            try:
                return await execute_local_first(step.activity, arg, **options)
            finally:
                self._local_step_task = workflow.info().get_current_history_length()
        activity: Any = step.activity
        result: T = await workflow.execute_activity(activity, arg, **options)
        return result

    # -- nested sagas (engine/temporal_saga/nested.py has the protocol) ----------------------

    async def _run_child(self, step: ChildSaga[Any, Any], arg: object) -> Any:
        run = self._children[step.name]
        # The start runs to its end: a child started is one its compensation must reach.
        await run_to_completion(start_child(step, arg, run))
        await workflow.wait_condition(lambda: run.ready is not None or run.final is not None)
        if run.ready is None:
            assert run.final is not None
            raise child_rejected(step.name, run.final)
        child: Any = step.child
        return child._result_type.model_validate(run.ready)

    def _child_compensation(
        self, step: ChildSaga[Any, Any], run: ChildRun
    ) -> Callable[[], Coroutine[Any, Any, object]]:
        async def compensate() -> object:
            if not run.started:
                return None  # never started: nothing to undo
            if run.final is None:
                try:
                    await tell(run.workflow_id, "parent_saga_word", ParentWord.COMPENSATE)
                except Exception:
                    # Not found: it has just ended (its last news on the way) or was
                    # terminated (the sweep resets it): wait for its news, else retry.
                    with contextlib.suppress(TimeoutError):
                        await workflow.wait_condition(
                            lambda: run.final is not None, timeout=RESEND_EVERY
                        )
                    if run.final is None:
                        raise
                await workflow.wait_condition(lambda: run.final is not None)
            assert run.final is not None
            if final_outcome(run.final) is Outcome.CONFIRMED:
                raise ApplicationError(
                    f"the nested saga {run.workflow_id} was confirmed: its work stands",
                    type="NestedSagaConfirmed",
                    non_retryable=True,
                )
            return None

        return compensate

    async def _commit_children(self) -> None:
        """Tell each nested saga that its work stands; resent until each takes it (a child
        the reconciler is resetting takes it on its new run)."""
        await asyncio.gather(*(self._commit(run) for run in self._children.values()))

    async def _commit(self, run: ChildRun) -> None:
        """Until the child's last news says it ended, so the parent's status and result
        show it CONFIRMED (a child being reset by the sweep takes it on its new run)."""
        while run.started and run.final is None:
            try:
                await tell(run.workflow_id, "parent_saga_word", ParentWord.COMMIT)
            except Exception as err:  # the child is closed or not there yet: try again
                if is_cancelled_exception(err):
                    raise
                workflow.logger.warning(
                    "nested saga %s did not take commit: %s", run.workflow_id, err
                )
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(lambda: run.final is not None, timeout=RESEND_EVERY)

    async def _await_parent_word(self) -> SagaFailure | None:
        """A nested saga's steps are done: tell the parent, and wait for its word (a cancel
        meanwhile is ignored: the parent decides)."""
        assert self._parent is not None
        self._waiting_for_parent = True
        self._publish()
        await run_to_completion(self._tell_parent(ready=self._result(Outcome.CONFIRMED)))
        await run_to_completion(workflow.wait_condition(lambda: self._parent_word is not None))
        self._waiting_for_parent = False
        if self._parent_word is ParentWord.COMMIT:
            return None
        return SagaFailure(
            None, PARENT_COMPENSATED, f"its parent saga {self._parent[0]} compensated"
        )

    async def _tell_parent(
        self, *, ready: SagaResult | None = None, final: SagaResult | None = None
    ) -> bool:
        """Tell the parent how this saga stands; False when it could not (it is closed)."""
        assert self._parent is not None
        self._news_seq += 1
        news = ChildNews(
            step=self._parent[1],
            seq=self._news_seq,
            status=self._status(),
            stuck=self._compensations.stuck,
            ready=ready.model_dump(mode="json") if ready is not None else None,
            final=final.model_dump(mode="json") if final is not None else None,
        )
        try:
            await tell(self._parent[0], "child_saga_news", news)
        except Exception as err:  # the parent is gone: its sweep settles it
            if is_cancelled_exception(err):
                raise
            workflow.logger.warning("could not tell parent %s: %s", self._parent[0], err)
            return False
        return True

    async def _tell_parent_until_taken(self, final: SagaResult) -> None:
        """How this saga ended, sent until the parent takes it (nested.py's protocol): again
        after a pause that doubles, or at once when the parent's (reset) run speaks."""
        pause, waited = RESEND_EVERY, timedelta(0)
        while not await self._tell_parent(final=final) and waited < FINAL_NEWS_PATIENCE:
            heard = self._parent_words
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda heard=heard: self._parent_words > heard,  # type: ignore[misc]
                    timeout=pause,
                )
            waited += pause
            pause = min(pause * 2, FINAL_NEWS_RESEND_MAX)

    def _compensation(
        self, step: Step[Any, Any, Any], undo_arg: object
    ) -> Callable[[], Coroutine[Any, Any, object]]:
        undo: Any = step.undo

        async def compensate() -> object:
            failure = self._failure or SagaFailure(step.name, CANCELLED, "compensating")
            arg = undo_arg(failure) if callable(undo_arg) else undo_arg
            attempt = self._compensations.attempts_of(step.undo_name or step.name)
            return await workflow.execute_activity(
                undo,
                arg,
                start_to_close_timeout=step.start_to_close_timeout,
                retry_policy=self.options.compensation_retry,
                heartbeat_timeout=step.heartbeat_timeout,
                task_queue=step.task_queue,
                summary=f"undo {step.name}: {step.undo_name}, attempt {attempt}",
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

    def _parent_says(self, word: ParentWord) -> None:
        self._parent_words += 1
        if self._parent_word is not None:
            return
        self._parent_word = word
        if word is ParentWord.COMPENSATE and not self._waiting_for_parent:
            # Still running its steps: stop them, as a cancel does.
            self._stop = self._stop or SagaFailure(
                self._current_step, PARENT_COMPENSATED, "its parent saga compensated"
            )
            if self._steps_task is not None:
                self._steps_task.cancel()

    def _child_says(self, news: ChildNews) -> None:
        run = self._children.get(news.step)
        if run is not None and run.take(news):
            self._publish()

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
            "running": list(self._running),
            "steps_done": list(self._steps_done),
            "children": self._child_states(),
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
        operator commands can list sagas by them; the page's current details; and a nested
        saga's parent told of each change of its status."""
        status = self._status()
        workflow.set_current_details(
            saga_page(
                workflow.info(),
                self._progress_now(status),
                self.options.attention_command,
            )
        )
        if self._parent is not None and status is not self._told_status:
            self._told_status = status
            self._news.append(asyncio.ensure_future(self._tell_parent()))
        step = ", ".join(self._running) if len(self._running) > 1 else self._current_step
        current = (status.value, step or "")
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

    def _progress_now(self, status: SagaStatus) -> SagaProgress[Any]:
        # Built without validation: the page is redrawn at every change.
        return SagaProgress[SagaResult].model_construct(
            status=status,
            current_step=self._current_step,
            running=list(self._running),
            steps_done=list(self._steps_done),
            children=self._child_states(),
            compensations=self._reports(),
            stuck=self._compensations.stuck,
            decision=self._decision,
        )

    def _child_states(self) -> list[ChildSagaState]:
        return [
            ChildSagaState(
                step=step, workflow_id=run.workflow_id, status=run.status, stuck=run.stuck
            )
            for step, run in self._children.items()
        ]

    def _reports(self) -> list[Any]:
        if self._compensations.phase is Phase.NOT_STARTED:
            return []
        reports = [report.model_copy() for report in self._compensations.reports]
        for report in reports:
            run = self._children.get(report.name)
            if run is not None and run.final is None and report.state is CompensationState.RUNNING:
                report.waiting_for = f"nested saga {run.workflow_id}: {run.words}"
        return reports

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
        if self._waiting_for_parent:
            assert self._parent is not None
            raise ApplicationError(
                f"this saga runs as step {self._parent[1]!r} of {self._parent[0]}, and its "
                "steps are done: its parent decides (cancel the parent)",
                type="TooLateToCancel",
            )
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
        self._refuse_for_a_child(name)
        self._compensations.validate_retry(name)

    @workflow.update
    def skip_compensation(self, request: SkipCompensation) -> str:
        """Operator: give up on a stuck compensation, with the reason; returns its name."""
        return self._compensations.skip(request.reason, request.name)

    @skip_compensation.validator
    def _validate_skip(self, request: SkipCompensation) -> None:
        self._refuse_for_a_child(request.name)
        self._compensations.validate_skip(request.reason, request.name)

    def _refuse_for_a_child(self, name: str | None) -> None:
        """A nested saga's compensation waits for the child, whose own compensation is the
        one stuck: send the operator there."""
        run = self._children.get(name or "")
        if run is None or run.final is not None:
            return
        raise ApplicationError(
            f"compensation {name!r} waits for the nested saga {run.workflow_id} "
            f"({run.words}): retry or skip its stuck compensation there "
            f"(--workflow-id {run.workflow_id})",
            type="NothingToResolve",
            non_retryable=True,
        )

    @workflow.signal
    def parent_saga_word(self, word: ParentWord) -> None:
        """From the parent of a nested saga: commit (its work stands) or compensate."""
        self._parent_says(word)

    @workflow.signal
    def child_saga_news(self, news: ChildNews) -> None:
        """From a nested saga: its status, its result once its steps are done, its end."""
        self._child_says(news)

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
