"""Activities against the warehouse service."""

from temporalio import activity

from activities.http import ServiceClient, call_service
from models.warehouse import CreateShipment, Shipment


class WarehouseActivities:
    def __init__(self, http: ServiceClient) -> None:
        self._http = http

    @activity.defn(name="create_shipment")
    async def create_shipment(self, shipment: CreateShipment) -> Shipment:
        return await call_service(self._http, "POST", "/shipments", Shipment, shipment)
