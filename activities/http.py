"""One call to a downstream service, with its outcome mapped to Temporal's retry semantics.

- Transport errors, timeouts, 408, 429 and 5xx are transient: raised as retryable errors, so
  Temporal's retry policy rides them out.
- Any other 4xx is a business refusal (out of stock, card declined, bad request): raised as a
  non-retryable ApplicationError whose type is the service's error code, so the workflow
  compensates instead of retrying.
"""

from typing import TypeVar

import httpx
from pydantic import BaseModel, ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from models.common import ServiceError

M = TypeVar("M", bound=BaseModel)

TRANSIENT_STATUS = {408, 425, 429}
SERVICE_UNAVAILABLE = "service_unavailable"


async def call_service(
    http: httpx.AsyncClient,
    method: str,
    path: str,
    response_model: type[M],
    body: BaseModel | None = None,
) -> M:
    service = str(http.base_url)
    try:
        response = await http.request(
            method, path, json=None if body is None else body.model_dump(mode="json")
        )
    except httpx.TransportError as err:  # connect errors, resets and timeouts
        raise ApplicationError(
            f"{method} {path} to {service} failed: {type(err).__name__} {err}".strip(),
            type=SERVICE_UNAVAILABLE,
        ) from err
    status = response.status_code
    # One line per call, with the activity's workflow (and so the order) attached.
    activity.logger.info("%s %s%s answered %d", method, service.rstrip("/"), path, status)
    if status >= 500 or status in TRANSIENT_STATUS:
        raise ApplicationError(
            f"{method} {path} to {service} answered {status}", type=SERVICE_UNAVAILABLE
        )
    if status >= 400:
        error = _service_error(response)
        raise ApplicationError(error.message, error.field, type=error.code, non_retryable=True)
    return response_model.model_validate_json(response.content)


def _service_error(response: httpx.Response) -> ServiceError:
    try:
        return ServiceError.model_validate_json(response.content)
    except ValidationError:
        return ServiceError(code=f"http_{response.status_code}", message=response.text[:500])
