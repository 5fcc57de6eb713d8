"""A call from a consumer activity: `call_service`, with the attempt number in the failure.

The failure's first detail is `activity.info().attempt`, so a job that gives up can write
how many attempts it made into its dead letter.
"""

from typing import TypeVar

from pydantic import BaseModel
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.http import ServiceClient, call_service

M = TypeVar("M", bound=BaseModel)


async def call_consumer(
    http: ServiceClient,
    method: str,
    path: str,
    response_model: type[M],
    body: BaseModel | None = None,
) -> M:
    try:
        return await call_service(http, method, path, response_model, body)
    except ApplicationError as err:
        raise ApplicationError(
            err.message,
            activity.info().attempt,
            *err.details,
            type=err.type,
            non_retryable=err.non_retryable,
        ) from err


def attempts_of(details: object) -> int | None:
    """The attempt number `call_consumer` put first in a failure's details, if any."""
    if isinstance(details, list | tuple) and details and isinstance(details[0], int):
        return details[0]
    return None
