"""Clients: Temporal (connection settings from envconfig) and one pooled httpx per service."""

import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.envconfig import ClientConfig

from worker.settings import Settings


async def connect_temporal(env: Mapping[str, str] | None = None) -> Client:
    """Connect with the settings of the environment and the TOML profile file.

    `env` replaces the process environment (the launcher passes the one of the parts it
    started); the profile file is the one TEMPORAL_CONFIG_FILE names, else the default
    location, and TEMPORAL_PROFILE picks the profile.
    """
    config = ClientConfig.load_client_connect_config(override_env_vars=env)
    config.setdefault("target_host", "localhost:7233")
    # Not the SDK's default "pid@hostname": histories get recorded into the repo.
    identity = f"checkout-saga-{os.getpid()}"
    return await Client.connect(**config, data_converter=pydantic_data_converter, identity=identity)


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


@asynccontextmanager
async def service_clients(settings: Settings) -> AsyncIterator[ServiceClients]:
    timeout = httpx.Timeout(settings.http_timeout_seconds)
    limits = httpx.Limits(max_connections=settings.http_max_connections)

    def client(url: object) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=str(url), timeout=timeout, limits=limits)

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
