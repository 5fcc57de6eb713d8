"""CheckoutRepair: settle the records of a checkout whose run ended without settling them.

Started by the engine's sweep (engine/temporal_saga/reconcile.py) for a checkout whose latest run
is terminated, timed out, failed or missing (reset away from: its new run is the one that
counts). It first cancels the order, because confirm and cancel exclude each other and a
terminated run's last local step may still land after the terminate:

- the cancel won (the order is CANCELLED): the charge is refunded and the stock released,
  with the checkout's own idempotency keys (a step still in flight finds a tombstone), and
  the rejection is announced;
- the order is CONFIRMED: it goes forward, as the checkout would have: the stock is
  committed and the confirmation announced, with the checkout's event id (a consumer that
  heard it already ignores it).

Each action is settled as a compensation is (retried; stuck: NEEDS_ATTENTION, for an operator).
"""

from temporalio import workflow

from temporal_saga import FOREVER_RETRY
from temporal_saga.reconcile import LOOKUP_TIMEOUT, SagaRepair
from workflows.fanout import announce_order_confirmed, announce_order_rejected

with workflow.unsafe.imports_passed_through():
    from activities.inventory import InventoryActivities
    from activities.orders import OrderActivities
    from activities.payments import PaymentActivities
    from models.checkout import (
        CheckoutRequest,
        CheckoutStep,
        checkout_workflow_id,
        idempotency_key,
    )
    from models.events import OrderConfirmed, OrderRejected
    from models.orders import Order, OrderCancellation, OrderStatus
    from models.payments import Refund
    from temporal_saga.models import AbandonedSaga, RepairResult
    from temporal_saga.runs import SagaRuns

CHECKOUT_REPAIR = "CheckoutRepair"
CHECKOUT_PREFIX = checkout_workflow_id("")


@workflow.defn(name=CHECKOUT_REPAIR)
class CheckoutRepairWorkflow(SagaRepair):
    @workflow.init
    def __init__(self, abandoned: AbandonedSaga) -> None:
        super().__init__(abandoned)

    @workflow.run
    async def run(self, abandoned: AbandonedSaga) -> RepairResult:
        return await self.run_repair(self.repair(abandoned))

    async def repair(self, abandoned: AbandonedSaga) -> RepairResult:
        workflow_id = abandoned.workflow_id
        order_id = workflow_id.removeprefix(CHECKOUT_PREFIX)
        why = f"checkout {abandoned.run.status.lower()} before it settled: reconciled"
        order = await self.settle(
            "cancel_order",
            OrderActivities.cancel_unless_confirmed,
            OrderCancellation(order_id=order_id, reason=why),
        )
        if order is None:
            # An operator skipped the cancel: they took the order over; whether it goes back
            # or forward is theirs to say, so nothing more is done here.
            return RepairResult(
                workflow_id=workflow_id, outcome="left_to_operator", skipped=self.actions_skipped
            )
        confirmed = order.status is OrderStatus.CONFIRMED
        reservation_id = idempotency_key(workflow_id, CheckoutStep.RESERVE_STOCK)
        if confirmed:
            await self.settle("commit_stock", InventoryActivities.commit_stock, reservation_id)
        else:
            charge_id = idempotency_key(workflow_id, CheckoutStep.CHARGE_PAYMENT)
            refund = Refund(charge_id=charge_id, reason=why)
            await self.settle("refund_payment", PaymentActivities.refund_payment, refund)
            await self.settle("release_stock", InventoryActivities.release_stock, reservation_id)
        await self._announce(abandoned, order, why)
        # The cancel that found the order confirmed changed nothing: not an action taken.
        actions = self.actions_done[1:] if confirmed else self.actions_done
        return RepairResult(
            workflow_id=workflow_id,
            outcome="confirmed" if confirmed else "cancelled",
            actions=actions,
            skipped=self.actions_skipped,
        )

    async def _announce(self, abandoned: AbandonedSaga, order: Order | None, why: str) -> None:
        """The outcome, as the checkout would have announced it (its event id): from its
        request, which its history holds. Without it (no history left) nothing is announced."""
        raw = await workflow.execute_activity_method(
            SagaRuns.saga_input,
            abandoned.workflow_id,
            start_to_close_timeout=LOOKUP_TIMEOUT,
            retry_policy=FOREVER_RETRY,
        )
        if raw is None:
            workflow.logger.warning("%s: no request left to announce from", abandoned.workflow_id)
            return
        request = CheckoutRequest.model_validate(raw)
        now, workflow_id = workflow.now(), abandoned.workflow_id
        if order is not None and order.status is OrderStatus.CONFIRMED:
            confirmed = OrderConfirmed.from_checkout(
                request, order, workflow_id=workflow_id, occurred_at=now
            )
            await announce_order_confirmed(confirmed)
            return
        priced = order if order is not None and order.lines else None
        rejected = OrderRejected.from_checkout(
            request,
            priced,
            workflow_id=workflow_id,
            occurred_at=now,
            reason=why,
            reason_code=abandoned.run.status.lower(),
        )
        await announce_order_rejected(rejected)
