"""Activities against the orders service."""

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.http import ServiceClient, call_service
from models.orders import CancelOrder, CreateOrder, Order, OrderCancellation, OrderStatus


class OrderActivities:
    def __init__(self, http: ServiceClient) -> None:
        self._http = http

    @activity.defn(name="create_order")
    async def create_order(self, order: CreateOrder) -> Order:
        """The order as the orders service priced it; what the checkout charges."""
        created = await call_service(self._http, "POST", "/orders", Order, order)
        if created.status is OrderStatus.CANCELLED:
            # Cancelled before it was created (the service's tombstone): nothing is priced,
            # nothing may be charged.
            raise ApplicationError(
                f"order {order.order_id!r} was cancelled before it was created",
                type="order_cancelled",
                non_retryable=True,
            )
        return created

    @activity.defn(name="confirm_order")
    async def confirm_order(self, order_id: str) -> Order:
        return await call_service(self._http, "POST", f"/orders/{order_id}/confirm", Order)

    @activity.defn(name="cancel_order")
    async def cancel_order(self, cancellation: OrderCancellation) -> Order:
        path = f"/orders/{cancellation.order_id}/cancel"
        return await call_service(
            self._http, "POST", path, Order, CancelOrder(reason=cancellation.reason)
        )

    @activity.defn(name="cancel_unless_confirmed")
    async def cancel_unless_confirmed(self, cancellation: OrderCancellation) -> Order:
        """Cancel the order, unless it is confirmed: the order as it stands either way.

        For the reconciler: confirm and cancel exclude each other (the orders service decides
        which came first), so whichever won says whether a saga's records go back or forward.
        An order never created gets a tombstone: a create still in flight is refused."""
        try:
            return await self.cancel_order(cancellation)
        except ApplicationError as err:
            if err.type != "order_confirmed":
                raise
        path = f"/orders/{cancellation.order_id}"
        return await call_service(self._http, "GET", path, Order)
