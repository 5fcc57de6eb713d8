"""Direct calls: the checkout as one chain of synchronous HTTP calls, no Temporal.

The "before" that the saga replaces: the caller calls each service in turn and answers the
customer only after the last one (order -> inventory -> payments -> confirm -> commit ->
email -> warehouse). No retries, no compensation, nothing survives a crash of the caller: a
failed call fails the checkout and leaves what was done behind. The bench only places
checkouts that succeed, so it measures the happy path's cost. The calls are the harness's
one service caller (harness/bench/service_calls.py), the DBOS peer's too.
"""

from datetime import UTC, datetime

from harness.bench.service_calls import ShopCalls
from models.checkout import CheckoutRequest
from models.events import OrderConfirmed


async def direct_checkout(calls: ShopCalls, request: CheckoutRequest) -> None:
    """Place the checkout with one call after the other; returns when all of them answered."""
    key = f"direct-{request.order_id}"
    reservation_id = f"{key}:reserve"
    # Priced by the orders service, as for the saga: the charge is the order's total.
    order = await calls.create_order(request)
    await calls.reserve_stock(request, reservation_id)
    await calls.charge_payment(request, order, f"{key}:charge")
    await calls.confirm_order(request.order_id)
    await calls.commit_stock(reservation_id)
    # The same receipt and shipment the saga's jobs send, built from the same event.
    confirmed = OrderConfirmed.from_checkout(
        request, order, workflow_id=key, occurred_at=datetime.now(UTC)
    )
    await calls.send_receipt(confirmed)
    await calls.create_shipment(confirmed)
