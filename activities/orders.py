"""Activities against the orders service."""

from temporalio import activity

from activities.http import ServiceClient, call_service
from models.orders import CancelOrder, CreateOrder, Order, OrderCancellation


class OrderActivities:
    def __init__(self, http: ServiceClient) -> None:
        self._http = http

    @activity.defn(name="create_order")
    async def create_order(self, order: CreateOrder) -> Order:
        return await call_service(self._http, "POST", "/orders", Order, order)

    @activity.defn(name="confirm_order")
    async def confirm_order(self, order_id: str) -> Order:
        return await call_service(self._http, "POST", f"/orders/{order_id}/confirm", Order)

    @activity.defn(name="cancel_order")
    async def cancel_order(self, cancellation: OrderCancellation) -> Order:
        path = f"/orders/{cancellation.order_id}/cancel"
        return await call_service(
            self._http, "POST", path, Order, CancelOrder(reason=cancellation.reason)
        )
