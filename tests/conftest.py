"""Shared fixtures: real Temporal servers from the venv's binaries, never downloaded."""

import os
from collections.abc import AsyncIterator, Iterator

import pytest
from pydantic import AnyHttpUrl
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from harness.bench.checkout_activities import CheckoutActivitiesWorkflow
from models.checkout import SEARCH_ATTRIBUTES
from services.auth import PUBLISHABLE_KEY_ENV, SERVICE_TOKEN_ENV, new_publishable_key, new_token
from stack.launcher import DEV_SERVER_DYNAMIC_CONFIG, SERVICES, start_services, venv_binary
from temporal_saga.codec import CODEC_KEYS_ENV, data_converter, format_keys, new_key
from tests.support.fanout_probe import PROBE_WORKFLOWS
from tests.support.stuck_refund import refunds_failing
from tests.support.time_skipping import time_skipping_server
from worker.clients import service_clients
from worker.runner import checkout_workers
from worker.settings import Settings

# Made fresh for the session, in the environment of this process and so of every process the
# tests start (services, workers, CLI runs): the services' bearer token and the payments
# service's publishable key (services.auth), and the payload key (temporal_saga.codec), as the
# launcher does for a stack.
os.environ[SERVICE_TOKEN_ENV] = new_token()
os.environ[PUBLISHABLE_KEY_ENV] = new_publishable_key()
os.environ[CODEC_KEYS_ENV] = format_keys([new_key("tests")])


@pytest.fixture(scope="module")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping test server per module: its clock skips only while no workflow task
    or activity anywhere on it is in flight, so one module's slow work must not hold the
    next module's clock."""
    async with time_skipping_server(pydantic_data_converter, SEARCH_ATTRIBUTES) as env:
        yield env


@pytest.fixture(scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    """A real Temporal dev server (SQLite in memory), no Web UI; payloads encrypted."""
    async with await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(venv_binary("temporal")),
        data_converter=data_converter(),
        ui=False,
        dev_server_log_level="warn",
        # As the launcher starts it: priorities honoured.
        dev_server_extra_args=[
            arg
            for setting in DEV_SERVER_DYNAMIC_CONFIG
            for arg in ("--dynamic-config-value", setting)
        ],
        search_attributes=SEARCH_ATTRIBUTES,
    ) as env:
        yield env


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Every real service (launcher.SERVICES: the checkout's, the fan-out's consumers and the
    dead letters), each its own process, started in parallel."""
    data_dir = tmp_path_factory.mktemp("services")
    started = []
    try:
        started = start_services(SERVICES, data_dir, {"PAYMENTS_FLAKY_FAILURES": "2"})
        yield {proc.name: proc.address for proc in started}
    finally:
        for proc in reversed(started):
            proc.stop()


@pytest.fixture(scope="session")
def checkout_settings(services: dict[str, str]) -> Settings:
    return Settings(
        task_queue="checkout-tests",
        orders_url=AnyHttpUrl(services["orders"]),
        inventory_url=AnyHttpUrl(services["inventory"]),
        payments_url=AnyHttpUrl(services["payments"]),
        email_url=AnyHttpUrl(services["email"]),
        warehouse_url=AnyHttpUrl(services["warehouse"]),
        analytics_url=AnyHttpUrl(services["analytics"]),
        loyalty_url=AnyHttpUrl(services["loyalty"]),
        deadletters_url=AnyHttpUrl(services["deadletters"]),
    )


@pytest.fixture(scope="session")
async def checkout_worker(
    dev_env: WorkflowEnvironment, checkout_settings: Settings
) -> AsyncIterator[Worker]:
    """The real checkout worker, in this process, against the dev server and the services;
    plus the fan-out's test workflows (tests/support/fanout_probe.py) and the bench's every-step-an-
    activity checkout on the same task queue."""
    async with (
        service_clients(checkout_settings) as clients,
        checkout_workers(
            dev_env.client,
            checkout_settings,
            clients,
            extra_workflows=[*PROBE_WORKFLOWS, CheckoutActivitiesWorkflow],
        ) as worker,
    ):
        yield worker


@pytest.fixture
def refunds_down(services: dict[str, str]) -> Iterator[str]:
    """The payments service's refunds answer 503 (charges still work) until the test PUTs {}
    to the URL yielded, or the test ends."""
    yield from refunds_failing(services)


# Fixtures that start real processes: a test that uses one is slow (`pytest -m "not slow"`).
SLOW_FIXTURES = {
    "dev_env",
    "services",
    "checkout_worker",
    "checkout_settings",
    "traced_checkout",
    "simulation_client",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
