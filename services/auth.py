"""Service authentication: a shared bearer token, from the environment.

Every service refuses to start without `CHECKOUT_SERVICE_TOKEN` (at least 16 characters) and
answers 401 on every route to a call that does not send `Authorization: Bearer <that token>`,
except `GET /health` (for probes) and the API docs (`/docs`, `/redoc`, `/openapi.json`: no
data). Callers (the worker's activities, the CLI's commands, the bench, the tests) send the
same variable's value. The launcher generates one per stack.
"""

import os
import secrets
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.errors import ServiceFailure

SERVICE_TOKEN_ENV = "CHECKOUT_SERVICE_TOKEN"
MIN_TOKEN_LENGTH = 16
OPEN_PATHS = frozenset({"/health"})


class MissingServiceToken(RuntimeError):
    pass


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_from_env(env: Mapping[str, str] | None = None) -> str:
    """The token of CHECKOUT_SERVICE_TOKEN; refuses a missing or short one."""
    token = (os.environ if env is None else env).get(SERVICE_TOKEN_ENV, "").strip()
    if len(token) < MIN_TOKEN_LENGTH:
        raise MissingServiceToken(
            f"{SERVICE_TOKEN_ENV} is {'too short' if token else 'not set'}: the services "
            f"accept only calls carrying it (at least {MIN_TOKEN_LENGTH} characters; "
            "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    return token


def bearer_headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def headers_from_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The header a caller sends, from CHECKOUT_SERVICE_TOKEN."""
    return bearer_headers(token_from_env(env))


def require_service_token(token: str) -> Callable[..., Awaitable[None]]:
    """The FastAPI dependency every route of a service gets (`FastAPI(dependencies=...)`).

    FastAPI's HTTPBearer reads the header, so the OpenAPI docs show the scheme and /docs has
    an Authorize button; the token is compared in constant time.
    """
    expected = token.encode()
    bearer = HTTPBearer(auto_error=False, description=f"the value of {SERVICE_TOKEN_ENV}")

    async def check(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
    ) -> None:
        if request.url.path in OPEN_PATHS:
            return
        if credentials is None or not secrets.compare_digest(
            credentials.credentials.encode(), expected
        ):
            raise ServiceFailure(
                401,
                "unauthorized",
                "missing or wrong service token",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return check
