"""The Temporal Web UI in a real browser (Debian's headless Chromium, installed by .ci/run):
checkouts listed by `SagaStatus`, a screenshot, and encrypted payloads shown decoded
through the codec server."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from temporalio.client import Client

from models.checkout import CartItem, CheckoutRequest, CheckoutResult, checkout_workflow_id
from models.payments import CARD_DECLINED, CARD_OK
from stack.launcher import ManagedProcess
from starter.checkouts import place_checkout
from temporal_saga.models import Outcome
from tests.support.cards import card_token
from tests.support.stock import new_stocked_sku
from tests.support.web_ui import chromium, web_ui
from worker.clients import service_clients
from worker.runner import checkout_workers
from worker.settings import Settings

# Starts a whole stack of its own.
pytestmark = pytest.mark.slow

BROWSER_SECONDS = 120.0
# How long the page may run its scripts (virtual time: it ends early once the page is idle).
PAGE_BUDGET_MS = 10_000


async def browse(url: str, profile: Path, *flags: str) -> str:
    """Load `url` in headless Chromium with `flags` (--dump-dom, --screenshot=...)."""
    process = await asyncio.create_subprocess_exec(
        chromium(),
        "--headless",
        "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        f"--virtual-time-budget={PAGE_BUDGET_MS}",
        *flags,
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout=BROWSER_SECONDS)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode == 0, err.decode(errors="replace")[-2000:]
    return out.decode(errors="replace")


@dataclass
class UiStack:
    ui_url: str
    client: Client
    codec_server: ManagedProcess
    confirmed: CheckoutRequest
    rejected: CheckoutRequest
    results: list[CheckoutResult]


def _request(services: dict[str, str], card: str, label: str) -> CheckoutRequest:
    sku = new_stocked_sku(services, "UI", unit_price_cents=990)
    return CheckoutRequest(
        order_id=f"ui-{label}-{uuid.uuid4().hex[:8]}",
        customer_id=f"cust-ui-{label}",
        email=f"ui-{label}-{uuid.uuid4().hex[:6]}@example.com",
        payment_token=card_token(services["payments"], card),
        items=[CartItem(sku=sku, quantity=1)],
    )


@pytest.fixture(scope="module")
async def ui_stack(
    tmp_path_factory: pytest.TempPathFactory,
    services: dict[str, str],
    checkout_settings: Settings,
) -> AsyncIterator[UiStack]:
    """A dev server with its Web UI pointed at a codec server, the real worker in this
    process, and two checkouts: one CONFIRMED, one REJECTED."""
    async with web_ui(tmp_path_factory.mktemp("web-ui")) as ui:
        confirmed = _request(services, CARD_OK, "ok")
        rejected = _request(services, CARD_DECLINED, "declined")
        async with (
            service_clients(checkout_settings) as clients,
            checkout_workers(ui.client, checkout_settings, clients),
        ):
            results = [
                await place_checkout(ui.client, request, checkout_settings.task_queue)
                for request in (confirmed, rejected)
            ]
        yield UiStack(ui.ui_url, ui.client, ui.codec_server, confirmed, rejected, results)


async def test_the_web_ui_lists_checkouts_by_status(ui_stack: UiStack, tmp_path: Path) -> None:
    assert [r.status for r in ui_stack.results] == [
        Outcome.CONFIRMED,
        Outcome.REJECTED,
    ]
    confirmed = checkout_workflow_id(ui_stack.confirmed.order_id)
    rejected = checkout_workflow_id(ui_stack.rejected.order_id)
    url = f"{ui_stack.ui_url}/namespaces/default/workflows?query="
    confirmed_page = url + quote('SagaStatus="CONFIRMED"')
    dom = ""
    for _ in range(3):  # bounded: visibility is eventually consistent
        dom = await browse(confirmed_page, tmp_path / "chromium", "--dump-dom")
        if confirmed in dom:
            break
    assert confirmed in dom, dom[-3000:]
    assert rejected not in dom  # filtered out by the query
    rejected_dom = await browse(
        url + quote('SagaStatus="REJECTED"'), tmp_path / "chromium", "--dump-dom"
    )
    assert rejected in rejected_dom and confirmed not in rejected_dom

    screenshot = tmp_path / "checkouts-confirmed.png"
    await browse(
        confirmed_page,
        tmp_path / "chromium",
        f"--screenshot={screenshot}",
        "--window-size=1440,900",
    )
    image = screenshot.read_bytes()
    assert image.startswith(b"\x89PNG") and len(image) > 10_000
    print(f"screenshot: {screenshot}")


async def test_the_web_ui_shows_encrypted_input_decoded_by_the_codec_server(
    ui_stack: UiStack, tmp_path: Path
) -> None:
    request = ui_stack.confirmed
    handle = ui_stack.client.get_workflow_handle(checkout_workflow_id(request.order_id))
    run_id = (await handle.describe()).run_id
    page = f"{ui_stack.ui_url}/namespaces/default/workflows/{handle.id}/{run_id}/history"
    dom = await browse(page, tmp_path / "chromium", "--dump-dom")
    # The email is stored encrypted (tests/worker/test_codec.py); the browser got it from the
    # codec server, which only answers the UI's origin.
    assert request.email in dom, dom[-3000:]
    # Without the codec server the UI has only the ciphertext to show.
    ui_stack.codec_server.stop()
    dom = await browse(page, tmp_path / "chromium", "--dump-dom")
    assert handle.id in dom and request.email not in dom
