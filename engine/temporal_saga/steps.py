"""A saga's steps, declared on its class: what each does, what undoes it, which is the pivot.

    class Transfer(SagaWorkflow[Request, SagaResult]):
        withdraw = Step(Bank.withdraw, undo=Bank.deposit_back)
        deposit = Step(Bank.deposit, pivot=True)

        async def transfer(self, request: Request) -> None:
            await self.withdraw(request.debit)
            await self.deposit(request.credit)

A step is called with its activity's argument, as `workflow.execute_activity` is; its undo is
called with the same argument, unless the step names another (`undo_arg=`), or a function of
the saga's failure that builds it when the compensation runs. Steps declared as a `Group` run
together:

        providers = Group(book_flight, book_hotel)
        ...
        await self.providers(self.book_flight(plan.flight), self.book_hotel(plan.hotel))

The declarations are checked when the class is made (so when the worker imports it); the
order in which steps run is checked as they run.
"""

import inspect
import typing
from collections.abc import Awaitable, Callable, Collection, Generator, Mapping, Sequence
from datetime import timedelta
from typing import Any, Generic, Protocol, Self, TypeVar, overload

from temporalio import workflow
from temporalio.common import Priority, RetryPolicy
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from temporal_saga.failures import SagaFailure as SagaFailure

A = TypeVar("A")
R = TypeVar("R")
U = TypeVar("U")

# Steps before the pivot give up after ~20 s of transient faults and compensate: someone is
# usually waiting for the answer. The pivot and what follows it retry until done.
STEP_TIMEOUT = timedelta(seconds=10)
STEP_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=500),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=5),
    maximum_attempts=8,
)
FOREVER_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=500),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=0,
)

Activity = Callable[[Any, A], Awaitable[R]] | Callable[[A], Awaitable[R]]
Undo = Callable[[Any, U], Awaitable[object]] | Callable[[U], Awaitable[object]]


class SagaDefinitionError(TypeError):
    """The steps declared on a saga class break a rule; raised when the class is made."""


class SagaMisuse(ApplicationError):
    """A saga ran its steps against the rules (a step twice, an undo after the pivot).

    It fails the workflow with this message (after compensating what was done, when the pivot
    was not reached), instead of a workflow task that fails and retries for ever.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, type="SagaMisuse", non_retryable=True)


class StepRunner(Protocol):
    """What runs a step: the saga (engine/temporal_saga/workflow.py)."""

    async def _run_step(self, step: "Step[Any, R, Any]", arg: object, undo_arg: object) -> R: ...

    async def _run_group(self, group: "Group", calls: "Sequence[StepCall[Any]]") -> list[Any]: ...


class Step(Generic[A, R, U]):
    """One step of a saga: its activity, and the activity that undoes it (if any).

    `pivot`: the point of no return; once it started, a cancel or the deadline is refused and
    once it succeeded nothing is undone. `local_first`: a local activity first, an activity
    after two failed tries (engine/temporal_saga/local.py). Steps after the pivot have no undo and
    retry until done. The step's name is its attribute's name; its compensation's name is the
    undo activity's name unless `undo_name` says otherwise.
    """

    @overload
    def __init__(
        self: "Step[A, R, None]",
        activity: Activity[A, R],
        *,
        pivot: bool = False,
        local_first: bool = False,
        start_to_close_timeout: timedelta = STEP_TIMEOUT,
        retry_policy: RetryPolicy | None = None,
        heartbeat_timeout: timedelta | None = None,
        task_queue: str | None = None,
        priority: Priority = Priority.default,
    ) -> None: ...

    @overload
    def __init__(
        self,
        activity: Activity[A, R],
        *,
        undo: Undo[U],
        undo_name: str | None = None,
        local_first: bool = False,
        start_to_close_timeout: timedelta = STEP_TIMEOUT,
        retry_policy: RetryPolicy | None = None,
        heartbeat_timeout: timedelta | None = None,
        task_queue: str | None = None,
        priority: Priority = Priority.default,
    ) -> None: ...

    def __init__(
        self,
        activity: Activity[A, R],
        *,
        undo: Undo[U] | None = None,
        undo_name: str | None = None,
        pivot: bool = False,
        local_first: bool = False,
        start_to_close_timeout: timedelta = STEP_TIMEOUT,
        retry_policy: RetryPolicy | None = None,
        heartbeat_timeout: timedelta | None = None,
        task_queue: str | None = None,
        priority: Priority = Priority.default,
    ) -> None:
        self.activity: Callable[..., Awaitable[R]] = activity
        self.undo: Callable[..., Awaitable[object]] | None = undo
        self.pivot = pivot
        self.local_first = local_first
        self.start_to_close_timeout = start_to_close_timeout
        self.retry_policy = retry_policy
        self.heartbeat_timeout = heartbeat_timeout
        self.task_queue = task_queue
        self.priority = priority
        self.name = ""
        # The saga a ChildSaga step runs (engine/temporal_saga/nested.py); None for an activity.
        self.child: type | None = None
        self.undo_name = undo_name or (activity_name(undo) if undo is not None else None)
        # What the undo takes, when a plain class says it: a step whose argument is not one
        # must pass its undo's argument (`undo_arg=`).
        self.undo_arg_type = _argument_type(undo) if undo is not None else None

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @property
    def compensated(self) -> bool:
        """Whether something undoes this step (its undo activity, or a nested saga's own
        compensations)."""
        return self.undo is not None or self.child is not None

    @overload
    def __get__(self, saga: None, owner: type) -> Self: ...

    @overload
    def __get__(self, saga: StepRunner, owner: type) -> "BoundStep[A, R, U]": ...

    def __get__(self, saga: StepRunner | None, owner: type) -> "Self | BoundStep[A, R, U]":
        if saga is None:
            return self
        return BoundStep(self, saga)

    def with_options(self, *, local_first: bool) -> "Step[A, R, U]":
        """The same step, run otherwise (e.g. every attempt an activity task)."""
        copy: Step[A, R, U] = Step.__new__(Step)
        copy.__dict__.update(self.__dict__, local_first=local_first)
        return copy


class BoundStep(Generic[A, R, U]):
    """A step of one saga run: call it to run the step."""

    def __init__(self, step: Step[A, R, U], saga: StepRunner) -> None:
        self._step = step
        self._saga = saga

    def __call__(
        self, arg: A, *, undo_arg: U | Callable[[SagaFailure], U] | None = None
    ) -> "StepCall[R]":
        """The step with its argument: await it to run the step (its undo registered first)
        and get the activity's result, or pass it to its group. The undo gets `undo_arg` (a
        value, or a function of the saga's failure that builds it when the compensation
        runs), else the step's own `arg`."""
        return StepCall(self._step, self._saga, arg, undo_arg)


class StepCall(Generic[R]):
    """A step with its argument, not yet run: awaiting it runs the step."""

    __slots__ = ("arg", "saga", "step", "undo_arg")

    def __init__(self, step: Step[Any, R, Any], saga: StepRunner, arg: object, undo_arg: object):
        self.step = step
        self.saga = saga
        self.arg = arg
        self.undo_arg = undo_arg

    def __await__(self) -> Generator[Any, None, R]:
        return self.saga._run_step(self.step, self.arg, self.undo_arg).__await__()


R1 = TypeVar("R1")
R2 = TypeVar("R2")
R3 = TypeVar("R3")
R4 = TypeVar("R4")


class Group:
    """Steps of a saga that run together (flight, hotel and car at once). Every member's undo
    is registered before any member starts; when one fails for good, the members still
    running are cancelled (and waited for: an activity that keeps running is not undone
    before it ends), and every member that started is compensated. The group ends when all
    its members have. A group holds no pivot; each member is declared as a Step first."""

    def __init__(self, *members: Step[Any, Any, Any]) -> None:
        self.members = members
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @property
    def member_names(self) -> list[str]:
        return [member.name for member in self.members]

    @overload
    def __get__(self, saga: None, owner: type) -> Self: ...

    @overload
    def __get__(self, saga: StepRunner, owner: type) -> "BoundGroup": ...

    def __get__(self, saga: StepRunner | None, owner: type) -> "Self | BoundGroup":
        if saga is None:
            return self
        return BoundGroup(self, saga)


class BoundGroup:
    """A group of one saga run: call it with its members' calls, in any order."""

    def __init__(self, group: Group, saga: StepRunner) -> None:
        self._group = group
        self._saga = saga

    @overload
    async def __call__(self, a: StepCall[R1], b: StepCall[R2], /) -> tuple[R1, R2]: ...

    @overload
    async def __call__(
        self, a: StepCall[R1], b: StepCall[R2], c: StepCall[R3], /
    ) -> tuple[R1, R2, R3]: ...

    @overload
    async def __call__(
        self, a: StepCall[R1], b: StepCall[R2], c: StepCall[R3], d: StepCall[R4], /
    ) -> tuple[R1, R2, R3, R4]: ...

    @overload
    async def __call__(self, *calls: StepCall[Any]) -> tuple[Any, ...]: ...

    async def __call__(self, *calls: StepCall[Any]) -> tuple[Any, ...]:
        """Run the members together; their results in the order of the calls given."""
        return tuple(await self._saga._run_group(self._group, calls))


def declared_steps(cls: type, reserved: Collection[str]) -> dict[str, Step[Any, Any, Any]]:
    """The steps of a saga class in the order declared (a subclass may redeclare one in
    place), checked against the rules; raises SagaDefinitionError. `reserved`: the names
    the saga itself uses (its handlers), which no step may hide."""
    steps: dict[str, Step[Any, Any, Any]] = {}
    for klass in reversed(cls.__mro__):
        for name, value in vars(klass).items():
            if isinstance(value, Step):
                steps[name] = value
    _check(cls.__qualname__, steps, reserved)
    return steps


def declared_groups(
    cls: type, steps: Mapping[str, Step[Any, Any, Any]], reserved: Collection[str]
) -> dict[str, Group]:
    """The groups of a saga class, checked: members that are steps of this saga, at least
    two, each in one group at most, no pivot."""
    where = cls.__qualname__
    groups: dict[str, Group] = {}
    for klass in reversed(cls.__mro__):
        for name, value in vars(klass).items():
            if isinstance(value, Group):
                groups[name] = value
    group_of: dict[int, str] = {}
    for name, group in groups.items():
        if name in reserved or name.startswith("_") or name in steps:
            raise SagaDefinitionError(f"{where}: group {name!r} hides the saga's own {name!r}")
        if len(group.members) < 2:
            raise SagaDefinitionError(
                f"{where}: group {name!r} has {len(group.members)} member(s): a group runs two "
                "steps or more together (run a single step on its own)"
            )
        for member in group.members:
            if not isinstance(member, Step) or steps.get(member.name) is not member:
                raise SagaDefinitionError(
                    f"{where}: group {name!r}: {getattr(member, 'name', member)!r} is not a "
                    "step declared on this saga: declare each member as a Step first"
                )
            if id(member) in group_of:
                other = group_of[id(member)]
                raise SagaDefinitionError(
                    f"{where}: step {member.name!r} is in group {other!r}"
                    + (" twice" if other == name else f" and in group {name!r}")
                    + ": a step belongs to one group at most"
                )
            group_of[id(member)] = name
            if member.pivot:
                raise SagaDefinitionError(
                    f"{where}: group {name!r} holds the pivot {member.name!r}: the pivot runs "
                    "on its own, once everything it depends on has succeeded"
                )
    return groups


def _check(where: str, steps: Mapping[str, Step[Any, Any, Any]], reserved: Collection[str]) -> None:
    names_of: dict[int, str] = {}
    for name, step in steps.items():
        if name in reserved or name.startswith("_"):
            raise SagaDefinitionError(f"{where}: step {name!r} hides the saga's own {name!r}")
        if id(step) in names_of:
            raise SagaDefinitionError(
                f"{where}: one Step is declared as both {names_of[id(step)]!r} and {name!r}: "
                "each step is a Step of its own"
            )
        names_of[id(step)] = name
        if step.pivot and step.undo is not None:
            raise SagaDefinitionError(
                f"{where}: step {name!r} is the pivot and has undo={step.undo_name!r}: "
                "nothing undoes the pivot, so it takes no undo"
            )
        for role, fn in (("activity", step.activity), ("undo", step.undo)):
            if step.child is None and fn is not None and not is_activity(fn):
                raise SagaDefinitionError(
                    f"{where}: step {name!r}: its {role} {getattr(fn, '__qualname__', fn)!r} "
                    "is not an activity definition: decorate it with @activity.defn"
                )
    pivots = [name for name, step in steps.items() if step.pivot]
    if len(pivots) > 1:
        raise SagaDefinitionError(f"{where}: one pivot step at most; found {', '.join(pivots)}")
    undo_names: dict[str, str] = {}
    for name, step in steps.items():
        if step.undo_name is None:
            continue
        if step.undo_name in undo_names:
            raise SagaDefinitionError(
                f"{where}: steps {undo_names[step.undo_name]!r} and {name!r} both have the "
                f"compensation {step.undo_name!r}: give one an undo_name"
            )
        undo_names[step.undo_name] = name
    if pivots:
        after = list(steps)[list(steps).index(pivots[0]) + 1 :]
        for name in after:
            if steps[name].child is not None:
                raise SagaDefinitionError(
                    f"{where}: step {name!r} is a nested saga after the pivot {pivots[0]!r}: "
                    "a nested saga is undone with its parent, and nothing is undone once the "
                    "pivot succeeded (start it as an ordinary child workflow instead)"
                )
            if steps[name].undo is not None:
                raise SagaDefinitionError(
                    f"{where}: step {name!r} comes after the pivot {pivots[0]!r} and has an "
                    "undo: nothing is undone once the pivot succeeded"
                )
        for name in [pivots[0], *after]:
            policy = steps[name].retry_policy
            if policy is not None and policy.maximum_attempts != 0:
                raise SagaDefinitionError(
                    f"{where}: step {name!r} is the pivot or follows it, so it retries until "
                    "done: its retry policy must have maximum_attempts=0"
                )


def _argument_type(fn: Callable[..., object]) -> type | None:
    """The class of the activity's argument (its last parameter), if its annotation is one."""
    try:
        hints = typing.get_type_hints(fn)
        parameters = [p for p in inspect.signature(fn).parameters if p != "self"]
    except (NameError, TypeError, ValueError):  # a forward reference, a builtin: unknown
        return None
    hint = hints.get(parameters[-1]) if parameters else None
    return hint if isinstance(hint, type) and hint is not object else None


def is_activity(fn: object) -> bool:
    """Whether `fn` is an @activity.defn function or method (what a worker can register)."""
    return getattr(fn, "__temporal_activity_definition", None) is not None


def activity_name(fn: Callable[..., object]) -> str:
    """The name a worker registers the activity `fn` under."""
    defn = getattr(fn, "__temporal_activity_definition", None)
    name = getattr(defn, "name", None)
    return name if isinstance(name, str) else str(getattr(fn, "__name__", fn))


class StepNamespace(dict[str, Any]):
    """A saga class body that refuses a step name given twice (the last would win)."""

    def __setitem__(self, key: str, value: Any) -> None:
        if isinstance(value, Step) and isinstance(self.get(key), Step):
            qualname = self.get("__qualname__", "saga")
            raise SagaDefinitionError(
                f"{qualname}: step {key!r} is declared twice: each step has a name of its own"
            )
        super().__setitem__(key, value)
