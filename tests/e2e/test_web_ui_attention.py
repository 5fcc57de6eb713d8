"""A stuck checkout's page in the Temporal Web UI, in headless Chromium driven by Playwright:
the saga's current details name the stuck compensation and the command that retries it; an
operator runs that command (once the cause is fixed) and the checkout leaves NEEDS_ATTENTION.

Refunds fail (an injected fault on the payments service, limited to them), so a declined
checkout's refund gets stuck after one attempt. The page of a running workflow keeps polling,
so the browser waits for elements (Playwright), never for the page to go idle."""

import asyncio
import shlex
from pathlib import Path

import httpx
import pytest
from playwright.async_api import FrameLocator, Page, async_playwright
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from models.checkout import (
    CheckoutResult,
    checkout_workflow_id,
)
from services.auth import headers_from_env
from temporal_saga.models import Outcome
from temporal_saga.search import SAGA_STATUS
from tests.support.cli import run_cli
from tests.support.polling import eventually
from tests.support.stuck_refund import declined_request
from tests.support.web_ui import CHROMIUM_ARGS, chromium, web_ui
from worker.clients import service_clients
from worker.runner import checkout_workers
from worker.settings import Settings
from workflows.checkout import CheckoutWorkflow

# Starts a dev server with its Web UI, a codec server, the worker and a browser of its own.
pytestmark = pytest.mark.slow

# Every wait in the browser, in milliseconds (Playwright's unit).
BROWSER_MS = 60_000
STUCK = "refund_payment"


async def saga_status(client: Client, workflow_id: str) -> str | None:
    described = await client.get_workflow_handle(workflow_id).describe()
    return described.typed_search_attributes.get(SAGA_STATUS)


def current_details(page: Page) -> FrameLocator:
    """The workflow's current details: the User Metadata tab renders their markdown in a frame
    of its own (the UI's /render?content=...)."""
    return page.frame_locator('iframe[title="output"]')


async def show_current_details(page: Page) -> FrameLocator:
    """From a workflow's page (a link to it opens its event history), its User Metadata tab,
    where "Current Details" is."""
    await page.get_by_text("User Metadata", exact=True).first.click()
    await page.get_by_role("heading", name="Current Details").wait_for()
    return current_details(page)


async def test_the_web_ui_shows_a_stuck_compensation_and_its_retry_command(
    tmp_path: Path,
    services: dict[str, str],
    checkout_settings: Settings,
    refunds_down: str,
) -> None:
    temporal_dir = tmp_path / "temporal"
    temporal_dir.mkdir()
    async with (
        web_ui(temporal_dir) as ui,
        service_clients(checkout_settings) as clients,
        # The worker stays up: the UI reads the details through a query the worker answers,
        # and the retry is an update it handles.
        checkout_workers(ui.client, checkout_settings, clients),
        async_playwright() as playwright,
    ):
        request = declined_request(services, "ui-attention")
        handle = await ui.client.start_workflow(
            CheckoutWorkflow.run,
            request,
            id=checkout_workflow_id(request.order_id),
            task_queue=checkout_settings.task_queue,
        )

        async def stuck() -> bool:
            return await saga_status(ui.client, handle.id) == "NEEDS_ATTENTION"

        await eventually(stuck, f"{handle.id} in NEEDS_ATTENTION", seconds=60)
        run_id = (await handle.describe()).run_id
        history_url = f"{ui.ui_url}/namespaces/default/workflows/{handle.id}/{run_id}/history"
        expected_retry = (
            f"checkout-saga attention retry --workflow-id {handle.id} --compensation {STUCK}"
        )

        browser = await playwright.chromium.launch(
            executable_path=chromium(), headless=True, args=list(CHROMIUM_ARGS)
        )
        try:
            page = await browser.new_page(viewport={"width": 1440, "height": 1000})
            page.set_default_timeout(BROWSER_MS)
            await page.goto(history_url, wait_until="domcontentloaded")
            # The event history names each activity by its summary.
            await page.get_by_text(f"undo charge_payment: {STUCK}, attempt 1").wait_for()
            details = await show_current_details(page)
            attention = details.locator("p", has_text="Needs attention")
            await attention.wait_for()
            screenshot = tmp_path / "stuck-checkout.png"
            await page.screenshot(path=str(screenshot), full_page=True)
            print(f"screenshot: {screenshot}")

            text = await details.locator("body").inner_text()
            print(f"current details:\n{text}")
            assert "Checkout: NEEDS_ATTENTION" in text, text
            row = await details.locator("li", has_text=STUCK).inner_text(timeout=5_000)
            assert row == f"{STUCK}: STUCK, 1 attempt", row
            said = " ".join((await attention.inner_text()).split())
            assert f"compensation {STUCK} is stuck after 1 attempt." in said, said
            assert "Last error: service_unavailable: POST /charges/" in said, said
            retry = await details.locator("code", has_text="attention retry").inner_text()
            assert retry == expected_retry, retry
            skip = await details.locator("code", has_text="attention skip").inner_text()
            assert skip == f"{expected_retry.replace(' retry ', ' skip ')} --reason '<why>'"

            # The cause fixed, the operator runs the command the page gave, as it is.
            async with httpx.AsyncClient(timeout=5, headers=headers_from_env()) as http:
                (await http.put(refunds_down, json={})).raise_for_status()
            program, *args = shlex.split(retry)
            assert program == "checkout-saga"
            env = WorkflowEnvironment.from_client(ui.client)
            # In a thread: the worker answering the CLI's update runs on this event loop.
            done = await asyncio.to_thread(run_cli, env, checkout_settings, *args)
            assert done.returncode == 0, done.stdout + done.stderr
            assert f"retrying {STUCK}" in done.stdout, done.stdout + done.stderr

            result: CheckoutResult = await asyncio.wait_for(handle.result(), timeout=60)
            assert result.status is Outcome.REJECTED
            refund = result.compensations[0]
            assert (refund.name, refund.state) == (STUCK, "DONE")
            assert await saga_status(ui.client, handle.id) == "REJECTED"

            # The page says so too, once reloaded (the details are read once per load).
            await page.goto(history_url, wait_until="domcontentloaded")
            details = await show_current_details(page)
            await details.locator("p", has_text="Checkout: REJECTED").wait_for()
            text = await details.locator("body").inner_text()
            print(f"current details, retried:\n{text}")
            assert "Needs attention" not in text, text
            resolved = tmp_path / "retried-checkout.png"
            await page.screenshot(path=str(resolved), full_page=True)
            print(f"screenshot: {resolved}")
        finally:
            await browser.close()
