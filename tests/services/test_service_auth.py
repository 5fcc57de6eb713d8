"""Service authentication (services.auth): no token, no call; no token configured, no service;
the payments service's public tokenization route takes its publishable key instead."""

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from models.common import ServiceError
from services.auth import (
    PUBLISHABLE_KEY_ENV,
    PUBLISHABLE_KEY_HEADER,
    SERVICE_TOKEN_ENV,
    bearer_headers,
    headers_from_env,
)
from worker.clients import service_clients
from worker.settings import Settings


@pytest.mark.parametrize("service", ["orders", "payments", "deadletters"])
def test_calls_without_the_token_are_refused(services: dict[str, str], service: str) -> None:
    url = services[service]
    paths = {"orders": "/orders", "payments": "/charges", "deadletters": "/deadletters"}
    for headers in ({}, bearer_headers("wrong-token-wrong-token"), {"Authorization": "Basic x"}):
        response = httpx.get(url + paths[service], headers=headers, timeout=10)
        assert response.status_code == 401, (headers, response.text)
        assert response.headers["www-authenticate"] == "Bearer"
        error = ServiceError.model_validate_json(response.content)
        assert error.code == "unauthorized"
    # A write without it changes nothing, and fault injection is no back door.
    fault = httpx.put(f"{url}/admin/fault", json={"fail": True}, timeout=10)
    assert fault.status_code == 401
    assert (
        httpx.get(f"{url}/admin/fault", headers=headers_from_env(), timeout=10).json()["fail"]
        is False
    )
    # With the token: answered; /health stays open for probes.
    ok = httpx.get(url + paths[service], headers=headers_from_env(), timeout=10)
    assert ok.status_code == 200, ok.text
    assert httpx.get(f"{url}/health", timeout=10).status_code == 200


def test_refused_write_has_no_effect(services: dict[str, str]) -> None:
    sku = "AUTH-NOWRITE"
    body = {"name": "Nope", "available": 5}
    refused = httpx.put(f"{services['inventory']}/stock/{sku}", json=body, timeout=10)
    assert refused.status_code == 401
    check = httpx.get(
        f"{services['inventory']}/stock/{sku}", headers=headers_from_env(), timeout=10
    )
    assert check.status_code == 404, check.text


def test_the_openapi_docs_show_the_bearer_scheme(services: dict[str, str]) -> None:
    schema = httpx.get(f"{services['orders']}/openapi.json", timeout=10).json()
    schemes = schema["components"]["securitySchemes"].values()
    assert [(s["type"], s["scheme"]) for s in schemes] == [("http", "bearer")]
    assert schema["paths"]["/orders"]["post"]["security"] == [{"HTTPBearer": []}]


def test_the_payments_docs_show_the_publishable_key_on_tokenization(
    services: dict[str, str],
) -> None:
    schema = httpx.get(f"{services['payments']}/openapi.json", timeout=10).json()
    security = schema["paths"]["/payment-methods"]["post"]["security"]
    assert {"APIKeyHeader": []} in security
    scheme = schema["components"]["securitySchemes"]["APIKeyHeader"]
    assert (scheme["in"], scheme["name"]) == ("header", PUBLISHABLE_KEY_HEADER)


@pytest.mark.parametrize("key", [None, "short"])
def test_payments_without_a_publishable_key_refuses_to_start(
    tmp_path: Path, key: str | None
) -> None:
    env = {k: v for k, v in os.environ.items() if k != PUBLISHABLE_KEY_ENV}
    if key is not None:
        env[PUBLISHABLE_KEY_ENV] = key
    args = [sys.executable, "-m", "services.payments", "--port", "0", "--db", "x.sqlite"]
    done = subprocess.run(
        args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2, done.stderr
    assert "refusing to start" in done.stderr and PUBLISHABLE_KEY_ENV in done.stderr
    assert not (tmp_path / "x.sqlite").exists()


@pytest.mark.parametrize("token", [None, "short"])
def test_a_service_without_a_token_refuses_to_start(tmp_path: Path, token: str | None) -> None:
    env = {k: v for k, v in os.environ.items() if k != SERVICE_TOKEN_ENV}
    if token is not None:
        env[SERVICE_TOKEN_ENV] = token
    args = [sys.executable, "-m", "services.orders", "--port", "0", "--db", "x.sqlite"]
    done = subprocess.run(
        args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2, done.stderr
    assert "refusing to start" in done.stderr and SERVICE_TOKEN_ENV in done.stderr
    assert not (tmp_path / "x.sqlite").exists()


async def test_the_worker_sends_the_token_and_needs_one(services: dict[str, str]) -> None:
    settings = Settings(orders_url=services["orders"])
    async with (
        service_clients(settings) as clients,
        clients.orders.session.get(f"{clients.orders.url}/orders") as response,
    ):
        assert response.status == 200, await response.text()
    without = settings.model_copy(update={"service_token": None})
    with pytest.raises(RuntimeError, match=SERVICE_TOKEN_ENV):
        async with service_clients(without):
            pass
