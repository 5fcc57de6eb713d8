"""Clients: Temporal (connection settings from envconfig) and one pooled httpx per service."""

import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.trace import TracerProvider
from temporalio.client import Client
from temporalio.envconfig import ClientConfig
from temporalio.runtime import Runtime

from telemetry.tracing import configured_tracer_provider
from worker.codec import data_converter
from worker.settings import Settings
from worker.telemetry import tracing_interceptor


async def connect_temporal(
    env: Mapping[str, str] | None = None,
    *,
    runtime: Runtime | None = None,
    tracer_provider: TracerProvider | None = None,
) -> Client:
    """Connect with the settings of the environment and the TOML profile file.

    `env` replaces the process environment (the launcher passes the one of the parts it
    started); the profile file is the one TEMPORAL_CONFIG_FILE names, else the default
    location, and TEMPORAL_PROFILE picks the profile. `runtime`: the SDK runtime (its metrics
    endpoint, worker.telemetry); `tracer_provider`: trace this client and its workers
    (default: the one `telemetry.tracing.configure_tracing` installed, if any).
    """
    config = ClientConfig.load_client_connect_config(override_env_vars=env)
    config.setdefault("target_host", "localhost:7233")
    # Not the SDK's default "pid@hostname": histories get recorded into the repo.
    identity = f"checkout-saga-{os.getpid()}"
    tracer_provider = tracer_provider or configured_tracer_provider()
    interceptors = [tracing_interceptor(tracer_provider)] if tracer_provider else []
    return await Client.connect(
        **config,
        # Encrypted when CHECKOUT_CODEC_KEYS is set (worker.codec).
        data_converter=data_converter(env),
        identity=identity,
        runtime=runtime,
        interceptors=interceptors,
    )


@dataclass(frozen=True)
class ServiceClients:
    orders: httpx.AsyncClient
    inventory: httpx.AsyncClient
    payments: httpx.AsyncClient
    email: httpx.AsyncClient
    warehouse: httpx.AsyncClient
    analytics: httpx.AsyncClient
    loyalty: httpx.AsyncClient
    deadletters: httpx.AsyncClient


def service_headers(settings: Settings) -> dict[str, str]:
    """`Authorization: Bearer <CHECKOUT_SERVICE_TOKEN>`, sent on every call to a service
    (services.auth); without a token no call could succeed, so this refuses."""
    if settings.service_token is None:
        raise RuntimeError(
            "CHECKOUT_SERVICE_TOKEN is not set: the services refuse calls without it"
        )
    return {"Authorization": f"Bearer {settings.service_token.get_secret_value()}"}


@asynccontextmanager
async def service_clients(
    settings: Settings, tracer_provider: TracerProvider | None = None
) -> AsyncIterator[ServiceClients]:
    """`tracer_provider`: a span per request, its context sent along (W3C traceparent)."""
    timeout = httpx.Timeout(settings.http_timeout_seconds)
    limits = httpx.Limits(max_connections=settings.http_max_connections)
    headers = service_headers(settings)

    def client(url: object) -> httpx.AsyncClient:
        http = httpx.AsyncClient(base_url=str(url), timeout=timeout, limits=limits, headers=headers)
        if tracer_provider is not None:
            HTTPXClientInstrumentor.instrument_client(http, tracer_provider=tracer_provider)
        return http

    async with (
        client(settings.orders_url) as orders,
        client(settings.inventory_url) as inventory,
        client(settings.payments_url) as payments,
        client(settings.email_url) as email,
        client(settings.warehouse_url) as warehouse,
        client(settings.analytics_url) as analytics,
        client(settings.loyalty_url) as loyalty,
        client(settings.deadletters_url) as deadletters,
    ):
        yield ServiceClients(
            orders=orders,
            inventory=inventory,
            payments=payments,
            email=email,
            warehouse=warehouse,
            analytics=analytics,
            loyalty=loyalty,
            deadletters=deadletters,
        )
