"""The checkout: create the order, reserve stock, charge the card, confirm; undo on failure.

A saga on the engine (workflows/saga), which gives it its updates, query, deadline, search
attributes and metrics: this file holds the checkout's business only. The customer's call
waits only for the decision (update-with-start of `decision`); committing the stock and
announcing the outcome happen after it.
"""

from datetime import timedelta
from typing import Final

from temporalio import workflow

from temporal_saga import (
    CANCELLED,
    DEADLINE_EXCEEDED,
    FOREVER_RETRY,
    STEP_TIMEOUT,
    UNAVAILABLE,
    CompensationPolicy,
    SagaOptions,
    SagaWorkflow,
    Step,
)
from workflows.fanout import announce_order_confirmed, announce_order_rejected

with workflow.unsafe.imports_passed_through():
    from activities.inventory import InventoryActivities
    from activities.orders import OrderActivities
    from activities.payments import PaymentActivities
    from models.checkout import (
        CUSTOMER_ID,
        CheckoutRequest,
        CheckoutResult,
        CheckoutStep,
        idempotency_key,
    )
    from models.events import AFTER_ANSWER, OrderConfirmed, OrderRejected
    from models.inventory import ReserveStock, StockLine
    from models.orders import CreateOrder, Order, OrderCancellation, OrderItem
    from models.payments import ChargeRequest, Refund

CHECKOUT = "Checkout"

# The customer's words for the refusals they can act on; others pass on the service's words.
REASON_FOR_CODE: Final = {
    "out_of_stock": "Sorry, part of your order is out of stock ({detail}).",
    "card_declined": "Your card was declined; please use another card.",
    "price_changed": "Prices changed since you saw your cart ({detail}); please check it again.",
    UNAVAILABLE: "We could not complete your order right now; please try again.",
    DEADLINE_EXCEEDED: "Your order took too long to confirm and was not placed.",
    CANCELLED: "Your order was cancelled ({detail}).",
}


@workflow.defn(name=CHECKOUT)
class CheckoutWorkflow(SagaWorkflow[CheckoutRequest, CheckoutResult]):
    # Up to the decision, each step is a local activity first (no server round trip), and an
    # activity, visible in the Web UI, if it fails twice (docs/performance.md: the trade-off).
    create_order = Step(
        OrderActivities.create_order, undo=OrderActivities.cancel_order, local_first=True
    )
    reserve_stock = Step(
        InventoryActivities.reserve_stock, undo=InventoryActivities.release_stock, local_first=True
    )
    charge_payment = Step(
        PaymentActivities.charge_payment, undo=PaymentActivities.refund_payment, local_first=True
    )
    # The pivot: once the order is confirmed it is never undone.
    confirm_order = Step(OrderActivities.confirm_order, pivot=True, local_first=True)

    @workflow.init
    def __init__(self, request: CheckoutRequest) -> None:
        options = request.options
        super().__init__(
            request,
            SagaOptions(
                deadline=timedelta(seconds=options.decision_deadline_seconds),
                compensation=CompensationPolicy(
                    attempts_before_attention=options.compensation_attempts_before_attention
                ),
                search_attributes=[CUSTOMER_ID.value_set(request.customer_id)],
                attention_command="checkout-saga attention",
            ),
        )
        # As the orders service priced it: what is charged and announced.
        self._order: Order | None = None

    @workflow.run
    async def run(self, request: CheckoutRequest) -> CheckoutResult:
        return await self.run_saga(self.checkout(request))

    async def checkout(self, request: CheckoutRequest) -> None:
        workflow_id = workflow.info().workflow_id
        reservation_id = idempotency_key(workflow_id, CheckoutStep.RESERVE_STOCK)
        charge_id = idempotency_key(workflow_id, CheckoutStep.CHARGE_PAYMENT)
        order = self._order = await self.create_order(
            CreateOrder(
                order_id=request.order_id,
                customer_id=request.customer_id,
                currency=request.currency,
                lines=[OrderItem(sku=i.sku, quantity=i.quantity) for i in request.items],
                expected_total_cents=request.expected_total_cents,
            ),
            undo_arg=lambda failure: OrderCancellation(
                order_id=request.order_id, reason=failure.summary
            ),
        )
        await self.reserve_stock(
            ReserveStock(
                reservation_id=reservation_id,
                order_id=request.order_id,
                lines=[StockLine(sku=i.sku, quantity=i.quantity) for i in request.items],
            ),
            undo_arg=reservation_id,
        )
        await self.charge_payment(
            ChargeRequest(
                charge_id=charge_id,
                order_id=request.order_id,
                amount_cents=order.total_cents,
                currency=order.currency,
                payment_token=request.payment_token,
            ),
            undo_arg=lambda failure: Refund(charge_id=charge_id, reason=failure.summary),
        )
        await self.confirm_order(request.order_id)  # the customer's answer goes out now
        # The stock is sold: committed behind the steps customers wait for, on the same task
        # queue; the fan-out follows the commit.
        await workflow.execute_activity_method(
            InventoryActivities.commit_stock,
            reservation_id,
            start_to_close_timeout=STEP_TIMEOUT,
            retry_policy=FOREVER_RETRY,
            priority=AFTER_ANSWER,
        )
        # Fire and forget: waits only until the jobs started and the signals went out.
        await announce_order_confirmed(
            OrderConfirmed.from_checkout(
                request, order, workflow_id=workflow_id, occurred_at=workflow.now()
            )
        )

    async def after_compensations(self, result: CheckoutResult) -> None:
        # After the undo, so consumers hear of the rejection only once it is true.
        await announce_order_rejected(
            OrderRejected.from_checkout(
                self.input,
                self._order,
                workflow_id=workflow.info().workflow_id,
                occurred_at=workflow.now(),
                reason=result.reason or "rejected",
                reason_code=result.reason_code,
                failed_step=result.failed_step.value if result.failed_step else None,
            )
        )

    def reason(self, code: str, detail: str) -> str:
        return REASON_FOR_CODE.get(code, "{detail}").format(detail=detail)

    def result_fields(self) -> dict[str, object]:
        # Nothing to pay when the order was never priced (refused at its creation).
        return {"total_cents": self._order.total_cents if self._order is not None else 0}
