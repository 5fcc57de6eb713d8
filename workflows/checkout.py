"""The checkout: create the order, reserve stock, charge the card, confirm; undo on failure."""

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.saga import Saga

with workflow.unsafe.imports_passed_through():
    from activities.http import SERVICE_UNAVAILABLE
    from activities.inventory import InventoryActivities
    from activities.orders import OrderActivities
    from activities.payments import PaymentActivities
    from models.checkout import CheckoutRequest, CheckoutResult, CheckoutStatus, CheckoutStep
    from models.inventory import ReserveStock, StockLine
    from models.orders import CreateOrder, OrderCancellation, OrderLine
    from models.payments import ChargeRequest, Refund

# Steps before the confirmation give up after ~20 s of transient faults and compensate: the
# customer is waiting. Compensations and steps after the confirmation retry until done.
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

# The customer's words for the refusals they can act on; others pass on the service's words.
REASON_FOR_CODE = {
    "out_of_stock": "Sorry, part of your order is out of stock ({detail}).",
    "card_declined": "Your card was declined; please use another card.",
    SERVICE_UNAVAILABLE: "We could not complete your order right now; please try again.",
}


def checkout_workflow_id(order_id: str) -> str:
    """One workflow per order: starting the same order twice finds the first run."""
    return f"checkout-{order_id}"


def idempotency_key(workflow_id: str, step: CheckoutStep) -> str:
    """Stable across activity retries, worker restarts and workflow resets."""
    return f"{workflow_id}:{step.value}"


@workflow.defn(name="Checkout")
class CheckoutWorkflow:
    def __init__(self) -> None:
        self._saga = Saga()

    @workflow.run
    async def run(self, request: CheckoutRequest) -> CheckoutResult:
        saga = self._saga
        wf_id = workflow.info().workflow_id
        reservation_id = idempotency_key(wf_id, CheckoutStep.RESERVE_STOCK)
        charge_id = idempotency_key(wf_id, CheckoutStep.CHARGE_PAYMENT)
        undo_reason = "checkout failed"

        try:
            await saga.step(
                CheckoutStep.CREATE_ORDER,
                lambda: workflow.execute_activity_method(
                    OrderActivities.create_order,
                    CreateOrder(
                        order_id=request.order_id,
                        customer_id=request.customer_id,
                        currency=request.currency,
                        lines=[OrderLine(**item.model_dump()) for item in request.items],
                    ),
                    start_to_close_timeout=STEP_TIMEOUT,
                    retry_policy=STEP_RETRY,
                ),
                compensation_name="cancel_order",
                compensation=lambda: workflow.execute_activity_method(
                    OrderActivities.cancel_order,
                    OrderCancellation(order_id=request.order_id, reason=undo_reason),
                    start_to_close_timeout=STEP_TIMEOUT,
                    retry_policy=FOREVER_RETRY,
                ),
            )
            await saga.step(
                CheckoutStep.RESERVE_STOCK,
                lambda: workflow.execute_activity_method(
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
                    retry_policy=FOREVER_RETRY,
                ),
            )
            await saga.step(
                CheckoutStep.CHARGE_PAYMENT,
                lambda: workflow.execute_activity_method(
                    PaymentActivities.charge_payment,
                    ChargeRequest(
                        charge_id=charge_id,
                        order_id=request.order_id,
                        amount_cents=request.total_cents,
                        currency=request.currency,
                        card_number=request.card_number,
                    ),
                    start_to_close_timeout=STEP_TIMEOUT,
                    retry_policy=STEP_RETRY,
                ),
                compensation_name="refund_payment",
                compensation=lambda: workflow.execute_activity_method(
                    PaymentActivities.refund_payment,
                    Refund(charge_id=charge_id, reason=undo_reason),
                    start_to_close_timeout=STEP_TIMEOUT,
                    retry_policy=FOREVER_RETRY,
                ),
            )
            # The confirmation decides: once it succeeds the order exists and is never undone.
            await saga.step(
                CheckoutStep.CONFIRM_ORDER,
                lambda: workflow.execute_activity_method(
                    OrderActivities.confirm_order,
                    request.order_id,
                    start_to_close_timeout=STEP_TIMEOUT,
                    retry_policy=FOREVER_RETRY,
                ),
            )
        except ActivityError as failure:
            code, message = _business_reason(failure)
            undo_reason = f"{saga.current_step} failed: {code}"
            failed_step = CheckoutStep(saga.current_step) if saga.current_step else None
            await saga.compensate()
            return self._result(request, CheckoutStatus.REJECTED, failed_step, code, message)
        except asyncio.CancelledError:
            undo_reason = "checkout cancelled"
            await saga.compensate()
            raise

        # After the decision: only forward. The stock is sold; retried until done.
        await workflow.execute_activity_method(
            InventoryActivities.commit_stock,
            reservation_id,
            start_to_close_timeout=STEP_TIMEOUT,
            retry_policy=FOREVER_RETRY,
        )
        return self._result(request, CheckoutStatus.CONFIRMED)

    def _result(
        self,
        request: CheckoutRequest,
        status: CheckoutStatus,
        failed_step: CheckoutStep | None = None,
        reason_code: str | None = None,
        reason: str | None = None,
    ) -> CheckoutResult:
        return CheckoutResult(
            order_id=request.order_id,
            status=status,
            total_cents=request.total_cents,
            currency=request.currency,
            failed_step=failed_step,
            reason_code=reason_code,
            reason=reason,
            steps_done=list(self._saga.steps_done),
            compensations_done=self._saga.compensations_done,
        )


def _business_reason(failure: ActivityError) -> tuple[str, str]:
    """The service's error code and the customer-facing words for a failed step."""
    cause = failure.cause
    if isinstance(cause, ApplicationError) and cause.type and cause.non_retryable:
        words = REASON_FOR_CODE.get(cause.type, "{detail}")
        return cause.type, words.format(detail=cause.message)
    # Transient faults that outlasted the step's retries (5xx, timeouts, unreachable).
    return SERVICE_UNAVAILABLE, REASON_FOR_CODE[SERVICE_UNAVAILABLE]
