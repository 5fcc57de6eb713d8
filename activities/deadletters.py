"""Activities against the dead-letters service."""

from temporalio import activity

from activities.http import ServiceClient, call_service
from models.deadletters import DeadLetter, NewDeadLetter


class DeadLetterActivities:
    def __init__(self, http: ServiceClient) -> None:
        self._http = http

    @activity.defn(name="record_dead_letter")
    async def record_dead_letter(self, letter: NewDeadLetter) -> DeadLetter:
        return await call_service(self._http, "POST", "/deadletters", DeadLetter, letter)
