"""One call to a downstream service, with its outcome mapped to Temporal's retry semantics.

- Transport errors, timeouts, 408, 429 and 5xx are transient: raised as retryable errors, so
  Temporal's retry policy rides them out.
- Any other 4xx is a business refusal (out of stock, card declined, bad request): raised as a
  non-retryable ApplicationError whose type is the service's error code, so the workflow
  compensates instead of retrying.

Every failure's first detail is the attempt number (`activity.info().attempt`), so the
workflow knows how many attempts a call made (engine/temporal_saga/failures.py reads it), local
activities included, whose failures carry no retry state.
"""

from dataclasses import dataclass
from typing import TypeVar

import aiohttp
from pydantic import BaseModel, ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from models.common import ServiceError

M = TypeVar("M", bound=BaseModel)

TRANSIENT_STATUS = {408, 425, 429}
SERVICE_UNAVAILABLE = "service_unavailable"
JSON = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class ServiceClient:
    """A service's base URL (no trailing slash) and the pooled aiohttp session that calls it.
    aiohttp, not httpx: the lighter on the worker's CPU for each call."""

    url: str
    session: aiohttp.ClientSession


async def call_service(
    http: ServiceClient,
    method: str,
    path: str,
    response_model: type[M],
    body: BaseModel | None = None,
) -> M:
    data = None if body is None else body.model_dump_json().encode()
    try:
        async with http.session.request(method, http.url + path, data=data, headers=JSON) as r:
            status = r.status
            content = await r.read()
    except (aiohttp.ClientError, TimeoutError) as err:  # connect errors, resets and timeouts
        raise ApplicationError(
            f"{method} {path} to {http.url} failed: {type(err).__name__} {err}".strip(),
            _attempt(),
            type=SERVICE_UNAVAILABLE,
        ) from err
    # One line per call, with the activity's workflow (and so the order) attached.
    activity.logger.info("%s %s%s answered %d", method, http.url, path, status)
    if status >= 500 or status in TRANSIENT_STATUS:
        raise ApplicationError(
            f"{method} {path} to {http.url} answered {status}", _attempt(), type=SERVICE_UNAVAILABLE
        )
    if status >= 400:
        error = _service_error(status, content)
        raise ApplicationError(
            error.message, _attempt(), error.field, type=error.code, non_retryable=True
        )
    return response_model.model_validate_json(content)


def _attempt() -> int:
    return activity.info().attempt


def _service_error(status: int, content: bytes) -> ServiceError:
    try:
        return ServiceError.model_validate_json(content)
    except ValidationError:
        text = content.decode(errors="replace")[:500]
        return ServiceError(code=f"http_{status}", message=text)
