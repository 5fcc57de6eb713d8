"""The FastAPI app every service starts from: the bearer token on every route but /health,
ServiceError bodies for every failure, GET /health, and fault injection under /admin/fault."""

from fastapi import Depends, FastAPI
from pydantic import BaseModel

from services.auth import require_service_token, token_from_env
from services.errors import install_error_bodies
from services.faults import install_faults


class Health(BaseModel):
    status: str
    service: str


def create_service_app(name: str, public_paths: frozenset[str] = frozenset()) -> FastAPI:
    """The app of service `name`, titled "`name` service" (telemetry reads the name back).

    `public_paths`: routes that take a credential of their own instead of the bearer token
    (the payments service's POST /payment-methods: services.auth)."""
    # No token, no service (services.auth): every route but /health needs the bearer token.
    check = require_service_token(token_from_env(), public_paths)
    app = FastAPI(title=f"{name} service", dependencies=[Depends(check)])
    install_error_bodies(app)

    @app.get("/health")
    def health() -> Health:
        return Health(status="ok", service=name)

    install_faults(app, name)
    return app
