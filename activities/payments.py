"""Activities against the payments service."""

from temporalio import activity

from activities.http import ServiceClient, call_service
from models.payments import Charge, ChargeRequest, Refund, RefundRequest


class PaymentActivities:
    def __init__(self, http: ServiceClient) -> None:
        self._http = http

    @activity.defn(name="charge_payment")
    async def charge_payment(self, charge: ChargeRequest) -> Charge:
        return await call_service(self._http, "POST", "/charges", Charge, charge)

    @activity.defn(name="refund_payment")
    async def refund_payment(self, refund: Refund) -> Charge:
        path = f"/charges/{refund.charge_id}/refund"
        return await call_service(
            self._http, "POST", path, Charge, RefundRequest(reason=refund.reason)
        )
