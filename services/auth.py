"""Service authentication: a shared bearer token, and the payments service's publishable key,
both from the environment.

Every service refuses to start without `CHECKOUT_SERVICE_TOKEN` (at least 16 characters) and
answers 401 on every route to a call that does not send `Authorization: Bearer <that token>`,
except `GET /health` (for probes), the API docs (`/docs`, `/redoc`, `/openapi.json`: no
data) and a service's public routes. Callers (the worker's activities, the CLI's commands,
the bench, the tests) send the same variable's value. The launcher generates one per stack.

The one public route is the payments service's `POST /payment-methods`, which a shop's front
end calls with a card number to get a token: it takes the publishable key
(`CHECKOUT_PAYMENTS_PUBLISHABLE_KEY`, sent as `X-Publishable-Key`) and nothing else, not the
service token, so the code that holds card numbers never holds the key to the services. The
payments service refuses to start without it; the launcher generates one per stack too.
"""

import os
import secrets
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated

from fastapi import Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from services.errors import ServiceFailure

SERVICE_TOKEN_ENV = "CHECKOUT_SERVICE_TOKEN"
PUBLISHABLE_KEY_ENV = "CHECKOUT_PAYMENTS_PUBLISHABLE_KEY"
PUBLISHABLE_KEY_HEADER = "X-Publishable-Key"
MIN_TOKEN_LENGTH = 16
OPEN_PATHS = frozenset({"/health"})


class MissingSecret(RuntimeError):
    """A secret a service needs to start is missing or too short."""


class MissingServiceToken(MissingSecret):
    pass


class MissingPublishableKey(MissingSecret):
    pass


def new_token() -> str:
    return secrets.token_urlsafe(32)


def new_publishable_key() -> str:
    return f"pk_{secrets.token_urlsafe(24)}"


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


def publishable_key_from_env(env: Mapping[str, str] | None = None) -> str:
    """The key of CHECKOUT_PAYMENTS_PUBLISHABLE_KEY; refuses a missing or short one."""
    key = (os.environ if env is None else env).get(PUBLISHABLE_KEY_ENV, "").strip()
    if len(key) < MIN_TOKEN_LENGTH:
        raise MissingPublishableKey(
            f"{PUBLISHABLE_KEY_ENV} is {'too short' if key else 'not set'}: the payments "
            "service tokenizes cards only for callers sending it (at least "
            f"{MIN_TOKEN_LENGTH} characters; generate one with: python -c 'import secrets; "
            'print("pk_" + secrets.token_urlsafe(24))\')'
        )
    return key


def publishable_key_headers(key: str) -> dict[str, str]:
    """What a shop's front end sends to POST /payment-methods."""
    return {PUBLISHABLE_KEY_HEADER: key}


def bearer_headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def headers_from_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The header a caller sends, from CHECKOUT_SERVICE_TOKEN."""
    return bearer_headers(token_from_env(env))


def require_service_token(
    token: str, public_paths: frozenset[str] = frozenset()
) -> Callable[..., Awaitable[None]]:
    """The FastAPI dependency every route of a service gets (`FastAPI(dependencies=...)`).

    FastAPI's HTTPBearer reads the header, so the OpenAPI docs show the scheme and /docs has
    an Authorize button; the token is compared in constant time. `public_paths`: routes that
    check a credential of their own instead (`require_publishable_key`).
    """
    expected = token.encode()
    unchecked = OPEN_PATHS | public_paths
    bearer = HTTPBearer(auto_error=False, description=f"the value of {SERVICE_TOKEN_ENV}")

    async def check(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
    ) -> None:
        if request.url.path in unchecked:
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


def require_publishable_key(key: str) -> Callable[..., Awaitable[None]]:
    """The dependency of a route a shop's front end calls: the publishable key in
    `X-Publishable-Key`, compared in constant time. The service token is no substitute."""
    expected = key.encode()
    scheme = APIKeyHeader(
        name=PUBLISHABLE_KEY_HEADER,
        auto_error=False,
        description=f"the value of {PUBLISHABLE_KEY_ENV}",
    )

    async def check(supplied: Annotated[str | None, Security(scheme)]) -> None:
        if supplied is None or not secrets.compare_digest(supplied.encode(), expected):
            raise ServiceFailure(401, "unauthorized", "missing or wrong publishable key")

    return check
