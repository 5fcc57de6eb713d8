"""Shipping, a saga with no pivot of its own, run as one step of ShippedOrder: reserve the
stock, book the shipping (the nested saga), then charge (the pivot).

The nested saga books a pickup and a delivery, then waits for its parent's word: its work
stands once the order is charged, and is undone (newest first) when the order compensates.
Everything else comes from the saga engine.
"""

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

from temporal_saga import ChildSaga, CompensationPolicy, SagaOptions, SagaWorkflow, Step

with workflow.unsafe.imports_passed_through():
    from examples.shipping.activities import ShopActivities
    from examples.shipping.models import OrderRequest, OrderResult, Shipment, ShippingResult


def _options(attempts_before_attention: int, deadline: timedelta | None = None) -> SagaOptions:
    return SagaOptions(
        deadline=deadline,
        compensation=CompensationPolicy(attempts_before_attention=attempts_before_attention),
        # One try per call: the saga retries with its own backoff.
        compensation_retry=RetryPolicy(maximum_attempts=1),
    )


@workflow.defn(name="Shipping")
class ShippingWorkflow(SagaWorkflow[Shipment, ShippingResult]):
    book_pickup = Step(ShopActivities.book_pickup, undo=ShopActivities.cancel_pickup)
    book_delivery = Step(ShopActivities.book_delivery, undo=ShopActivities.cancel_delivery)

    @workflow.init
    def __init__(self, shipment: Shipment) -> None:
        # No deadline: its parent's decides.
        super().__init__(shipment, _options(shipment.attempts_before_attention))

    @workflow.run
    async def run(self, shipment: Shipment) -> ShippingResult:
        return await self.run_saga(self.ship(shipment))

    async def ship(self, shipment: Shipment) -> None:
        await self.book_pickup(shipment)
        await self.book_delivery(shipment)


@workflow.defn(name="ShippedOrder")
class OrderWorkflow(SagaWorkflow[OrderRequest, OrderResult]):
    reserve_stock = Step(ShopActivities.reserve_stock, undo=ShopActivities.release_stock)
    shipping = ChildSaga(ShippingWorkflow)
    # The point of no return: once charged, the order and its shipping stand.
    charge = Step(ShopActivities.charge, pivot=True)

    @workflow.init
    def __init__(self, order: OrderRequest) -> None:
        deadline = timedelta(seconds=order.deadline_seconds)
        super().__init__(order, _options(order.attempts_before_attention, deadline))

    @workflow.run
    async def run(self, order: OrderRequest) -> OrderResult:
        return await self.run_saga(self.place(order))

    async def place(self, order: OrderRequest) -> None:
        await self.reserve_stock(order)
        await self.shipping(order.shipment())
        await self.charge(order)
