"""Nested sagas: a saga run as one step of another, as a child workflow.

    class ShippingWorkflow(SagaWorkflow[Shipment, SagaResult]):   # no pivot of its own
        book_dhl = Step(Carriers.book_dhl, undo=Carriers.cancel_dhl)
        book_ups = Step(Carriers.book_ups, undo=Carriers.cancel_ups)

    class OrderWorkflow(SagaWorkflow[Order, SagaResult]):
        reserve = Step(Shop.reserve, undo=Shop.release)
        shipping = ChildSaga(ShippingWorkflow)
        charge = Step(Shop.charge, pivot=True)

The protocol, between two sagas on this engine:

1. The parent starts the child (workflow id `<parent id>/<step>`, the parent's task queue,
   parent close policy ABANDON) with its parent's id in the child's memo. Its compensation is
   registered before the start, as every undo is.
2. The child runs its steps. If one fails for good, it compensates itself and ends REJECTED;
   the parent's step fails with the child's reason (and the parent compensates the rest).
3. Once its steps are done, the child tells its parent (the parent's step returns the
   child's result) and waits for its parent's word. A cancel of the child is refused while it
   waits: its parent decides.
4. The parent's word: **commit** when the parent's pivot succeeded (or, with no pivot, when
   all its steps did): the child ends CONFIRMED and its work stands. **compensate** when
   the parent compensates: the child undoes its steps (newest first, with its own retries,
   attention and operator handling) and ends REJECTED; the parent's compensation of that step
   ends when the child has. A compensate that reaches a child still running its steps stops
   them, as a cancel does: that is how a cancel of the parent reaches the child.
5. The child tells its parent each change of its status, so the parent's `status` and page
   show that it waits for a child that needs attention.

Every message goes by workflow id, never by run: a run the reconciler reset (after a
terminate) takes the messages of the run it replaced. A child's last news (how it ended) is
sent until its parent takes it: a parent terminated while the child ended on its own learns
it once the sweep has reset it (it could not ask a closed child). A terminated parent is
settled by the sweep (reset, then cancelled before its pivot: it compensates, which tells
the child); a terminated child likewise (reset, then cancelled: it compensates if it had
not finished its steps; if it had, it waits again for its parent's word, which its parent
resends until the child takes it).
"""

import contextlib
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from temporalio import workflow
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError

from temporal_saga.steps import SagaDefinitionError, Step

with workflow.unsafe.imports_passed_through():
    from temporal_saga.models import ChildNews, Outcome, SagaResult, SagaStatus

if TYPE_CHECKING:
    from temporal_saga.workflow import SagaWorkflow

A = TypeVar("A")
R = TypeVar("R", bound="SagaResult")

# Where a nested saga finds its parent: a memo the parent sets when it starts it.
PARENT_MEMO = "temporal_saga_parent"
# How long the parent waits between tries of a word its child has not taken yet.
RESEND_EVERY = timedelta(seconds=5)
# A child's last news, untaken (its parent terminated, waiting for its sweep's reset), is
# sent again after RESEND_EVERY, then twice as long each time up to this, ...
FINAL_NEWS_RESEND_MAX = timedelta(minutes=10)
# ... for this long in all: the sweep runs far more often. Past it the child ends; its parent
# then waits for an operator (its compensation of the child stuck).
FINAL_NEWS_PATIENCE = timedelta(days=1)


class ChildSaga(Step[A, R, None]):
    """A step that runs another saga (declared on this engine, without a pivot) as a child
    workflow; see the module's docs for the protocol. Awaiting it returns the child's result
    once its steps are done; its work stands if the parent reaches its pivot and is undone as
    part of the parent's rollback otherwise."""

    def __init__(
        self,
        saga: "type[SagaWorkflow[A, R]]",
        *,
        task_queue: str | None = None,
        execution_timeout: timedelta | None = None,
    ) -> None:
        steps = getattr(saga, "saga_steps", None)
        if steps is None:
            raise SagaDefinitionError(
                f"ChildSaga({getattr(saga, '__qualname__', saga)!r}): not a saga on this "
                "engine (a SagaWorkflow subclass)"
            )
        pivots = [name for name, step in steps().items() if step.pivot]
        if pivots:
            raise SagaDefinitionError(
                f"ChildSaga({saga.__qualname__}): it has a pivot ({pivots[0]!r}), so its work "
                "stands on its own: a nested saga has none, its parent's pivot decides"
            )
        run = getattr(saga, "run", None)
        if run is None or not hasattr(run, "__temporal_workflow_run"):
            raise SagaDefinitionError(
                f"ChildSaga({saga.__qualname__}): it has no @workflow.run method: decorate the "
                "class with @workflow.defn and its run with @workflow.run"
            )
        # A Step whose "activity" is the child's run (no undo of its own: the child's
        # compensations are its undo, named after the step).
        super().__init__(run, task_queue=task_queue)
        self.execution_timeout = execution_timeout
        self.child = saga

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        self.undo_name = name  # its compensation is the child's own


@dataclass
class ChildRun:
    """What a parent knows of one nested saga: the child's news, by sequence."""

    workflow_id: str
    started: bool = False
    seq: int = 0
    status: SagaStatus | None = None
    stuck: list[str] = field(default_factory=list)
    # The child's result when its steps were done, and its final one.
    ready: dict[str, Any] | None = None
    final: dict[str, Any] | None = None

    def take(self, news: ChildNews) -> bool:
        """Keep the newest news; False for an old one (signals may cross)."""
        if news.seq <= self.seq:
            return False
        self.seq = news.seq
        self.status = news.status
        self.stuck = list(news.stuck)
        self.ready = news.ready if news.ready is not None else self.ready
        self.final = news.final if news.final is not None else self.final
        return True

    @property
    def words(self) -> str:
        """How the child stands, for the parent's status and page."""
        if self.status is None:
            return "starting"
        stuck = f" ({', '.join(self.stuck)} stuck)" if self.stuck else ""
        return f"{self.status.value}{stuck}"


async def start_child(step: ChildSaga[Any, Any], arg: object, run: ChildRun) -> None:
    """Start the nested saga (once: a parent reset by the reconciler finds it started)."""
    parent = workflow.info().workflow_id
    # Already started by this parent's run before a reset: the same child, take it.
    with contextlib.suppress(WorkflowAlreadyStartedError):
        await workflow.start_child_workflow(
            step.activity,
            arg,
            id=run.workflow_id,
            task_queue=step.task_queue,
            execution_timeout=step.execution_timeout,
            parent_close_policy=workflow.ParentClosePolicy.ABANDON,
            memo={PARENT_MEMO: {"workflow_id": parent, "step": step.name}},
            static_summary=f"nested saga {step.name} of {parent}",
        )
    run.started = True


def child_rejected(step: str, final: dict[str, Any]) -> ApplicationError:
    """The failure of a parent's step whose nested saga rejected itself."""
    return ApplicationError(
        str(final.get("reason") or f"the nested saga {step} was rejected"),
        type=str(final.get("reason_code") or "nested_saga_rejected"),
        non_retryable=True,
    )


async def tell(workflow_id: str, signal: str, message: object) -> None:
    """Send a message to a saga by workflow id (its newest run)."""
    await workflow.get_external_workflow_handle(workflow_id).signal(signal, message)


def parent_link() -> tuple[str, str] | None:
    """(the parent's workflow id, the parent's step) when this saga runs nested."""
    memo = workflow.memo_value(PARENT_MEMO, None, type_hint=dict)
    if not isinstance(memo, dict):
        return None
    return str(memo["workflow_id"]), str(memo["step"])


def final_outcome(final: dict[str, Any]) -> Outcome:
    return Outcome(final["status"])
