"""Clients: Temporal (connection settings from envconfig) and one pooled httpx per service."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.envconfig import ClientConfig

from worker.settings import Settings


async def connect_temporal(address: str | None = None) -> Client:
    """Connect with the environment's or the profile file's settings.

    `address` overrides the target (used by the launcher, which knows the port it started).
    """
    config = ClientConfig.load_client_connect_config()
    if address is not None:
        config["target_host"] = address
    config.setdefault("target_host", "localhost:7233")
    return await Client.connect(**config, data_converter=pydantic_data_converter)


@dataclass(frozen=True)
class ServiceClients:
    orders: httpx.AsyncClient
    inventory: httpx.AsyncClient
    payments: httpx.AsyncClient


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
    ):
        yield ServiceClients(orders=orders, inventory=inventory, payments=payments)
