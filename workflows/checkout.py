"""The checkout: create the order, reserve stock, charge the card, confirm; undo on failure.

The customer's call waits only for the decision (the `decision` update, started together with
the workflow); committing the stock and announcing the outcome happen after it.
"""

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    is_cancelled_exception,
)

from workflows.fanout import announce_order_confirmed, announce_order_rejected
from workflows.local import execute_local_first
from workflows.metrics import (
    count_compensation_run,
    count_compensation_stuck,
    count_confirmed,
    count_rejected,
)
from workflows.saga import (
    CompensationPolicy,
    CompensationState,
    NothingToResolve,
    Saga,
    SagaStatus,
    run_to_completion,
)

with workflow.unsafe.imports_passed_through():
    from activities.http import SERVICE_UNAVAILABLE
    from activities.inventory import InventoryActivities
    from activities.orders import OrderActivities
    from activities.payments import PaymentActivities
    from models.checkout import (
        CancelCheckout,
        CheckoutProgress,
        CheckoutRequest,
        CheckoutResult,
        CheckoutStatus,
        CheckoutStep,
        CompensationReport,
        SkipCompensation,
    )
    from models.events import AFTER_ANSWER, OrderConfirmed, OrderRejected, after_answer_queue
    from models.inventory import ReserveStock, StockLine
    from models.orders import CreateOrder, Order, OrderCancellation, OrderItem
    from models.payments import ChargeRequest, Refund

# Keyword search attributes kept current for the Web UI; register them on the cluster.
CHECKOUT_STATUS = SearchAttributeKey.for_keyword("CheckoutStatus")
CHECKOUT_STEP = SearchAttributeKey.for_keyword("CheckoutStep")
CUSTOMER_ID = SearchAttributeKey.for_keyword("CustomerId")
SEARCH_ATTRIBUTES = (CHECKOUT_STATUS, CHECKOUT_STEP, CUSTOMER_ID)

# Steps before the confirmation give up after ~20 s of transient faults and compensate: the
# customer is waiting. Steps after the confirmation retry until done. Compensations get a few
# quick attempts per call; the saga retries the call and asks a person when it stays stuck.
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
COMPENSATION_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=500),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=2),
    maximum_attempts=3,
)
COMPENSATION_POLICY = CompensationPolicy(
    initial_backoff=timedelta(seconds=1), maximum_backoff=timedelta(seconds=30)
)

# Histories recorded before the checkout announced its outcome replay without announcing.
ANNOUNCE_OUTCOME_PATCH = "announce-outcome"
# Checkouts started before `options.local_steps` existed ran their steps as activities.
LOCAL_STEPS_PATCH = "local-steps"
# With local steps, committing the stock as a local activity held the customer's answer until
# the commit was done too (a workflow task ends when its local activities do); since this
# patch the commit is an activity, so the answer leaves as soon as it is known.
COMMIT_AS_ACTIVITY_PATCH = "commit-as-activity"

A = TypeVar("A")
R = TypeVar("R")

# The customer's words for the refusals they can act on; others pass on the service's words.
REASON_FOR_CODE = {
    "out_of_stock": "Sorry, part of your order is out of stock ({detail}).",
    "card_declined": "Your card was declined; please use another card.",
    "price_changed": "Prices changed since you saw your cart ({detail}); please check it again.",
    SERVICE_UNAVAILABLE: "We could not complete your order right now; please try again.",
    "deadline_exceeded": "Your order took too long to confirm and was not placed.",
    "cancelled": "Your order was cancelled ({detail}).",
}


def checkout_workflow_id(order_id: str) -> str:
    """One workflow per order: starting the same order twice finds the first run."""
    return f"checkout-{order_id}"


def idempotency_key(workflow_id: str, step: CheckoutStep) -> str:
    """Stable across activity retries, worker restarts and workflow resets."""
    return f"{workflow_id}:{step.value}"


class _Stopped(Exception):
    """The checkout was stopped before its decision: cancelled, or past its deadline."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@workflow.defn(name="Checkout")
class CheckoutWorkflow:
    @workflow.init
    def __init__(self, request: CheckoutRequest) -> None:
        self._request = request
        self._saga = Saga(
            policy=CompensationPolicy(
                initial_backoff=COMPENSATION_POLICY.initial_backoff,
                maximum_backoff=COMPENSATION_POLICY.maximum_backoff,
                attempts_before_attention=request.options.compensation_attempts_before_attention,
            ),
            on_change=lambda _saga: self._publish(),
        )
        self._undo_reason = "checkout failed"
        self._stop: _Stopped | None = None
        self._steps: asyncio.Task[None] | None = None
        self._pivot_started = False
        self._decision: CheckoutResult | None = None
        self._final: CheckoutResult | None = None
        self._published: tuple[str, str] | None = None
        self._local_steps = False
        # As create_order returned it: the shop's prices and total, what is charged.
        self._order: Order | None = None

    @workflow.run
    async def run(self, request: CheckoutRequest) -> CheckoutResult:
        workflow.upsert_search_attributes([CUSTOMER_ID.value_set(request.customer_id)])
        self._publish()
        # Asked for by the request, and recorded (patch marker) so the choice replays.
        self._local_steps = request.options.local_steps and workflow.patched(LOCAL_STEPS_PATCH)
        self._steps = asyncio.ensure_future(self._run_steps())
        deadline = asyncio.ensure_future(self._enforce_deadline())
        failure: _Stopped | ActivityError | None = None
        try:
            await self._steps
        except _Stopped as err:
            failure = err
        except (ActivityError, asyncio.CancelledError) as err:
            # A cancelled step: the cancel update, the deadline, or a Temporal cancellation of
            # the workflow (a step in retry backoff reports it as an ActivityError).
            if is_cancelled_exception(err):
                failure = self._stop or _Stopped("cancelled", "the workflow was cancelled")
            else:
                assert isinstance(err, ActivityError)
                failure = err
        finally:
            deadline.cancel()
        if failure is not None:
            self._final = await run_to_completion(self._reject(failure))
        else:
            self._final = await run_to_completion(self._after_confirmation())
        self._publish()
        await run_to_completion(workflow.wait_condition(workflow.all_handlers_finished))
        return self._final

    # -- the steps ---------------------------------------------------------------------------

    async def _run_steps(self) -> None:
        request, saga = self._request, self._saga
        if self._stop is not None:  # cancelled before the first step
            raise self._stop
        wf_id = workflow.info().workflow_id
        reservation_id = idempotency_key(wf_id, CheckoutStep.RESERVE_STOCK)
        charge_id = idempotency_key(wf_id, CheckoutStep.CHARGE_PAYMENT)

        order = await saga.step(
            CheckoutStep.CREATE_ORDER,
            lambda: self._step_activity(
                OrderActivities.create_order,
                CreateOrder(
                    order_id=request.order_id,
                    customer_id=request.customer_id,
                    currency=request.currency,
                    lines=[OrderItem(sku=i.sku, quantity=i.quantity) for i in request.items],
                    expected_total_cents=request.expected_total_cents,
                ),
                start_to_close_timeout=STEP_TIMEOUT,
                retry_policy=STEP_RETRY,
            ),
            compensation_name="cancel_order",
            compensation=lambda: workflow.execute_activity_method(
                OrderActivities.cancel_order,
                OrderCancellation(order_id=request.order_id, reason=self._undo_reason),
                start_to_close_timeout=STEP_TIMEOUT,
                retry_policy=COMPENSATION_RETRY,
            ),
        )
        self._order = order
        await saga.step(
            CheckoutStep.RESERVE_STOCK,
            lambda: self._step_activity(
                InventoryActivities.reserve_stock,
                ReserveStock(
                    reservation_id=reservation_id,
                    order_id=request.order_id,
                    lines=[StockLine(sku=i.sku, quantity=i.quantity) for i in request.items],
                ),
                start_to_close_timeout=STEP_TIMEOUT,
                retry_policy=STEP_RETRY,
            ),
            compensation_name="release_stock",
            compensation=lambda: workflow.execute_activity_method(
                InventoryActivities.release_stock,
                reservation_id,
                start_to_close_timeout=STEP_TIMEOUT,
                retry_policy=COMPENSATION_RETRY,
            ),
        )
        await saga.step(
            CheckoutStep.CHARGE_PAYMENT,
            lambda: self._step_activity(
                PaymentActivities.charge_payment,
                ChargeRequest(
                    charge_id=charge_id,
                    order_id=request.order_id,
                    # The order's total, as the orders service priced it.
                    amount_cents=order.total_cents,
                    currency=order.currency,
                    payment_token=request.payment_token,
                ),
                start_to_close_timeout=STEP_TIMEOUT,
                retry_policy=STEP_RETRY,
            ),
            compensation_name="refund_payment",
            compensation=lambda: workflow.execute_activity_method(
                PaymentActivities.refund_payment,
                Refund(charge_id=charge_id, reason=self._undo_reason),
                start_to_close_timeout=STEP_TIMEOUT,
                retry_policy=COMPENSATION_RETRY,
            ),
        )
        # The pivot: once the order is confirmed it is never undone. From here on, a cancel
        # or the deadline is refused, and the confirmation runs to the end.
        self._pivot_started = True
        await saga.step(
            CheckoutStep.CONFIRM_ORDER,
            lambda: self._step_activity(
                OrderActivities.confirm_order, request.order_id, retry_policy=FOREVER_RETRY
            ),
            pivot=True,
        )
        self._decision = self._result(CheckoutStatus.CONFIRMED)
        count_confirmed()
        workflow.logger.info("checkout decided: CONFIRMED")
        self._publish()

    def _step_activity(
        self,
        activity: Callable[[Any, A], Awaitable[R]],
        arg: A,
        *,
        retry_policy: RetryPolicy,
        start_to_close_timeout: timedelta = STEP_TIMEOUT,
    ) -> Awaitable[R]:
        """A forward step's call: a local activity (options.local_steps, the default), run by
        this worker inside the workflow task and recorded as a marker, continuing as an
        activity if it keeps failing; or an activity."""
        if self._local_steps:
            return execute_local_first(
                activity,
                arg,
                start_to_close_timeout=start_to_close_timeout,
                retry_policy=retry_policy,
            )
        return workflow.execute_activity_method(
            activity, arg, start_to_close_timeout=start_to_close_timeout, retry_policy=retry_policy
        )

    async def _after_confirmation(self) -> CheckoutResult:
        """Forward only: the stock is sold; retried until done."""
        reservation_id = idempotency_key(workflow.info().workflow_id, CheckoutStep.RESERVE_STOCK)
        if self._local_steps and not workflow.patched(COMMIT_AS_ACTIVITY_PATCH):
            await self._step_activity(
                InventoryActivities.commit_stock, reservation_id, retry_policy=FOREVER_RETRY
            )
        else:
            await workflow.execute_activity_method(
                InventoryActivities.commit_stock,
                reservation_id,
                start_to_close_timeout=STEP_TIMEOUT,
                retry_policy=FOREVER_RETRY,
                priority=AFTER_ANSWER,
                # Its worker waits while the CPU is busy: a burst's answers go first, and the
                # fan-out, which follows the commit, with it.
                task_queue=after_answer_queue(workflow.info().task_queue),
            )
        if workflow.patched(ANNOUNCE_OUTCOME_PATCH):
            assert self._order is not None  # confirmed: the order was created
            # Fire and forget: waits only until the jobs started and the signals went out.
            await announce_order_confirmed(
                OrderConfirmed.from_checkout(
                    self._request,
                    self._order,
                    workflow_id=workflow.info().workflow_id,
                    occurred_at=workflow.now(),
                )
            )
        return self._result(CheckoutStatus.CONFIRMED)

    async def _reject(self, failure: _Stopped | ActivityError) -> CheckoutResult:
        if self._steps is not None and not self._steps.done():
            await asyncio.wait([self._steps])  # a cancelled step settles before its undo runs
        code, detail = (
            (failure.code, failure.detail)
            if isinstance(failure, _Stopped)
            else _business_reason(failure)
        )
        failed_step = CheckoutStep(self._saga.current_step) if self._saga.current_step else None
        self._undo_reason = f"{failed_step or 'checkout'} failed: {code}"
        reason = REASON_FOR_CODE.get(code, "{detail}").format(detail=detail)
        self._decision = self._result(CheckoutStatus.REJECTED, failed_step, code, reason)
        count_rejected(code)
        workflow.logger.info("checkout decided: REJECTED (%s at %s)", code, failed_step or "start")
        self._publish()
        await self._saga.compensate()
        for record in self._saga.compensations:
            if record.state is CompensationState.DONE:
                count_compensation_run(record.name)
        if workflow.patched(ANNOUNCE_OUTCOME_PATCH):
            # After the undo, so consumers hear of the rejection only once it is true.
            await announce_order_rejected(
                OrderRejected.from_checkout(
                    self._request,
                    self._order,
                    workflow_id=workflow.info().workflow_id,
                    occurred_at=workflow.now(),
                    reason=reason,
                    reason_code=code,
                    failed_step=failed_step.value if failed_step else None,
                )
            )
        return self._result(CheckoutStatus.REJECTED, failed_step, code, reason)

    async def _enforce_deadline(self) -> None:
        await workflow.sleep(timedelta(seconds=self._request.options.decision_deadline_seconds))
        if not self._pivot_started and self._steps is not None:
            self._stop = _Stopped("deadline_exceeded", "not confirmed within the deadline")
            self._steps.cancel()

    # -- what callers and operators see and do -----------------------------------------------

    @workflow.update
    async def decision(self) -> CheckoutResult:
        """The customer's answer, as soon as it is known (use with update-with-start)."""
        return await self._wait_for_decision()

    async def _wait_for_decision(self) -> CheckoutResult:
        await workflow.wait_condition(lambda: self._decision is not None)
        assert self._decision is not None
        return self._decision

    @workflow.update
    async def cancel(self, request: CancelCheckout) -> CheckoutResult:
        """Cancel before the confirmation; the compensations run to the end."""
        if self._stop is None:  # a repeated cancel keeps the first reason
            self._stop = _Stopped("cancelled", request.reason)
        if self._steps is not None:
            self._steps.cancel()
        return await self._wait_for_decision()

    @cancel.validator
    def _validate_cancel(self, request: CancelCheckout) -> None:
        if self._pivot_started or self._decision is not None:
            raise ApplicationError(
                "too late to cancel: the checkout has already reached its decision "
                f"({self._decision.status if self._decision else 'confirming'})",
                type="TooLateToCancel",
            )

    @workflow.update
    def retry_compensation(self, name: str | None = None) -> str:
        """Operator: try a stuck compensation again; returns its name."""
        return self._saga.retry_compensation(name)

    @retry_compensation.validator
    def _validate_retry(self, name: str | None = None) -> None:
        _check_stuck(self._saga, name)

    @workflow.update
    def skip_compensation(self, request: SkipCompensation) -> str:
        """Operator: give up on a stuck compensation, with the reason; returns its name."""
        return self._saga.skip_compensation(request.reason, request.name)

    @skip_compensation.validator
    def _validate_skip(self, request: SkipCompensation) -> None:
        _check_stuck(self._saga, request.name)

    @workflow.query
    def status(self) -> CheckoutProgress:
        return CheckoutProgress(
            order_id=self._request.order_id,
            status=self._status(),
            current_step=self._saga.current_step,
            steps_done=list(self._saga.steps_done),
            compensations=self._reports(),
            stuck=self._saga.stuck,
            decision=self._decision,
        )

    # -- helpers -----------------------------------------------------------------------------

    def _status(self) -> str:
        saga_status = self._saga.status
        if saga_status is SagaStatus.NEEDS_ATTENTION:
            return saga_status.value
        if self._decision is not None and saga_status is not SagaStatus.COMPENSATING:
            return self._decision.status.value
        if saga_status is SagaStatus.COMPENSATING:
            return saga_status.value
        return SagaStatus.RUNNING.value

    def _publish(self) -> None:
        """Keep the search attributes current, so the Web UI can list checkouts by them."""
        current = (self._status(), self._saga.current_step or "")
        if current != self._published:
            attention = SagaStatus.NEEDS_ATTENTION.value
            stuck_now = current[0] == attention and (self._published or ("", ""))[0] != attention
            self._published = current
            workflow.upsert_search_attributes(
                [CHECKOUT_STATUS.value_set(current[0]), CHECKOUT_STEP.value_set(current[1])]
            )
            for name in self._saga.stuck if stuck_now else []:
                count_compensation_stuck(name)

    def _reports(self) -> list[CompensationReport]:
        return [
            CompensationReport(
                name=record.name,
                state=record.state.value,
                attempts=record.attempts,
                last_error=record.last_error,
                skip_reason=record.skip_reason,
            )
            for record in self._saga.compensations
            if self._saga.status not in (SagaStatus.RUNNING, SagaStatus.PAST_PIVOT)
        ]

    def _result(
        self,
        status: CheckoutStatus,
        failed_step: CheckoutStep | None = None,
        reason_code: str | None = None,
        reason: str | None = None,
    ) -> CheckoutResult:
        request = self._request
        return CheckoutResult(
            order_id=request.order_id,
            status=status,
            # 0 when the order was never priced (refused or unanswered at create_order).
            total_cents=self._order.total_cents if self._order is not None else 0,
            currency=request.currency,
            failed_step=failed_step,
            reason_code=reason_code,
            reason=reason,
            steps_done=list(self._saga.steps_done),
            compensations_done=self._saga.compensations_done,
            compensations=self._reports(),
        )


def _check_stuck(saga: Saga, name: str | None) -> None:
    try:
        saga.check_stuck(name)
    except NothingToResolve as err:
        raise ApplicationError(str(err), type="NothingToResolve") from err


def _business_reason(failure: ActivityError) -> tuple[str, str]:
    """The service's error code and its words for a failed step."""
    cause = failure.cause
    if isinstance(cause, ApplicationError) and cause.type and cause.non_retryable:
        return cause.type, cause.message
    # Transient faults that outlasted the step's retries (5xx, timeouts, unreachable).
    return SERVICE_UNAVAILABLE, str(cause or failure)
