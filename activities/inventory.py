"""Activities against the inventory service."""

from temporalio import activity

from activities.http import ServiceClient, call_service
from models.inventory import Reservation, ReserveStock


class InventoryActivities:
    def __init__(self, http: ServiceClient) -> None:
        self._http = http

    @activity.defn(name="reserve_stock")
    async def reserve_stock(self, reservation: ReserveStock) -> Reservation:
        return await call_service(self._http, "POST", "/reservations", Reservation, reservation)

    @activity.defn(name="release_stock")
    async def release_stock(self, reservation_id: str) -> Reservation:
        path = f"/reservations/{reservation_id}/release"
        return await call_service(self._http, "POST", path, Reservation)

    @activity.defn(name="commit_stock")
    async def commit_stock(self, reservation_id: str) -> Reservation:
        path = f"/reservations/{reservation_id}/commit"
        return await call_service(self._http, "POST", path, Reservation)
