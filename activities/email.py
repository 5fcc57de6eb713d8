"""Activities against the email service."""

from temporalio import activity

from activities.consumer import call_consumer
from activities.http import ServiceClient
from models.email import SendEmail, SentEmail


class EmailActivities:
    def __init__(self, http: ServiceClient) -> None:
        self._http = http

    @activity.defn(name="send_email")
    async def send_email(self, email: SendEmail) -> SentEmail:
        return await call_consumer(self._http, "POST", "/emails", SentEmail, email)
