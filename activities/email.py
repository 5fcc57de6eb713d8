"""Activities against the email service."""

from temporalio import activity

from activities.http import ServiceClient, call_service
from models.email import SendEmail, SentEmail


class EmailActivities:
    def __init__(self, http: ServiceClient) -> None:
        self._http = http

    @activity.defn(name="send_email")
    async def send_email(self, email: SendEmail) -> SentEmail:
        return await call_service(self._http, "POST", "/emails", SentEmail, email)
