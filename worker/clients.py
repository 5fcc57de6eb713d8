"""Clients: Temporal (connection settings from envconfig) and one pooled aiohttp session per
service."""

import os
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import aiohttp
from opentelemetry.instrumentation.aiohttp_client import create_trace_config
from opentelemetry.trace import TracerProvider
from temporalio.client import Client
from temporalio.runtime import Runtime

from activities.http import ServiceClient
from telemetry.tracing import configured_tracer_provider
from temporal_saga.worker import connect
from worker.settings import Settings
from worker.telemetry import tracing_interceptor


async def connect_temporal(
    env: Mapping[str, str] | None = None,
    *,
    runtime: Runtime | None = None,
    tracer_provider: TracerProvider | None = None,
) -> Client:
    """Connect as the engine's `connect` does (envconfig and the TOML profile, the pydantic
    converter, payloads encrypted when SAGA_CODEC_KEYS is set), traced with
    `tracer_provider` (default: the one `telemetry.tracing.configure_tracing` installed, if
    any). `env` replaces the process environment (the launcher passes the one of the parts
    it started); `runtime`: the SDK runtime (its metrics endpoint, worker.telemetry)."""
    tracer_provider = tracer_provider or configured_tracer_provider()
    return await connect(
        env,
        identity=f"checkout-saga-{os.getpid()}",
        interceptors=[tracing_interceptor(tracer_provider)] if tracer_provider else [],
        runtime=runtime,
    )


@dataclass(frozen=True)
class ServiceClients:
    orders: ServiceClient
    inventory: ServiceClient
    payments: ServiceClient
    email: ServiceClient
    warehouse: ServiceClient
    analytics: ServiceClient
    loyalty: ServiceClient
    deadletters: ServiceClient


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
    timeout = aiohttp.ClientTimeout(total=settings.http_timeout_seconds)
    headers = service_headers(settings)
    traced = (
        [] if tracer_provider is None else [create_trace_config(tracer_provider=tracer_provider)]
    )

    async with AsyncExitStack() as sessions:

        def client(url: object) -> ServiceClient:
            session = aiohttp.ClientSession(
                timeout=timeout,
                headers=headers,
                connector=aiohttp.TCPConnector(limit=settings.http_max_connections),
                trace_configs=traced,
            )
            sessions.push_async_callback(session.close)
            return ServiceClient(str(url).rstrip("/"), session)

        yield ServiceClients(
            orders=client(settings.orders_url),
            inventory=client(settings.inventory_url),
            payments=client(settings.payments_url),
            email=client(settings.email_url),
            warehouse=client(settings.warehouse_url),
            analytics=client(settings.analytics_url),
            loyalty=client(settings.loyalty_url),
            deadletters=client(settings.deadletters_url),
        )
