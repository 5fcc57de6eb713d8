"""Activities against the loyalty service."""

from temporalio import activity

from activities.http import ServiceClient, call_service
from models.loyalty import AddPoints, LedgerEntry


class LoyaltyActivities:
    def __init__(self, http: ServiceClient) -> None:
        self._http = http

    @activity.defn(name="add_loyalty_points")
    async def add_loyalty_points(self, entry: AddPoints) -> LedgerEntry:
        return await call_service(self._http, "POST", "/ledger", LedgerEntry, entry)
