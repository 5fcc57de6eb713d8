"""Activities against the analytics service."""

from temporalio import activity

from activities.http import ServiceClient, call_service
from models.analytics import RecordedEvent, RecordEvent


class AnalyticsActivities:
    def __init__(self, http: ServiceClient) -> None:
        self._http = http

    @activity.defn(name="record_order_event")
    async def record_order_event(self, record: RecordEvent) -> RecordedEvent:
        return await call_service(self._http, "POST", "/events", RecordedEvent, record)
