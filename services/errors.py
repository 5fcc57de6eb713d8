"""The services' error bodies: every failure answers a ServiceError, never a traceback."""

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from models.common import ServiceError


class ServiceFailure(Exception):
    """A refusal the client should see, rendered as a ServiceError body."""

    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status_code = status_code
        self.error = ServiceError(code=code, message=message, field=field)
        self.headers = headers


def error_response(
    status_code: int, error: ServiceError, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error.model_dump(), status_code=status_code, headers=headers)


# Where pydantic puts the request part first in a location; the client's field name follows.
_REQUEST_PARTS = {"body", "query", "path", "header", "cookie"}


def _on_service_failure(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceFailure)
    return error_response(exc.status_code, exc.error, exc.headers)


def _on_validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0]
    loc = [str(part) for part in first.get("loc", ())]
    if loc and loc[0] in _REQUEST_PARTS:
        loc = loc[1:]
    if first.get("type") == "json_invalid":
        loc = []  # not JSON at all: no field to name (the number there is a character offset)
    # Only pydantic's msg: the input itself may be a card number and is never echoed.
    error = ServiceError(
        code="invalid_request",
        message=str(first.get("msg", "invalid")).removeprefix("Value error, "),
        field=".".join(loc) or None,
    )
    return error_response(422, error)


def _on_http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    codes = {404: "not_found", 405: "method_not_allowed"}
    error = ServiceError(code=codes.get(exc.status_code, "http_error"), message=str(exc.detail))
    return error_response(exc.status_code, error, dict(exc.headers or {}))


def _on_unexpected(_: Request, exc: Exception) -> JSONResponse:
    # The traceback still goes to the server log; the client gets no internals.
    return error_response(500, ServiceError(code="internal_error", message="internal error"))


def install_error_bodies(app: FastAPI) -> None:
    """Render every failure of `app` as a ServiceError: refusals, invalid requests, unknown
    routes and unexpected exceptions alike."""
    app.add_exception_handler(ServiceFailure, _on_service_failure)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)
