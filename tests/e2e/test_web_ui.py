"""The Temporal Web UI in a real browser (Debian's headless Chromium, installed by .ci/run):
checkouts listed by `SagaStatus`, a screenshot, and encrypted payloads shown decoded
through the codec server."""

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from temporalio.client import Client

from models.checkout import CartItem, CheckoutRequest, CheckoutResult, checkout_workflow_id
from models.payments import CARD_DECLINED, CARD_OK
from stack.launcher import ManagedProcess, free_port, start_codec_server, start_temporal
from starter.checkouts import place_checkout
from temporal_saga.models import Outcome
from tests.support.cards import card_token
from tests.support.stock import new_stocked_sku
from worker.clients import connect_temporal, service_clients
from worker.runner import checkout_workers
from worker.settings import Settings

# Starts a whole stack of its own.
pytestmark = pytest.mark.slow

BROWSER_SECONDS = 120.0
# How long the page may run its scripts (virtual time: it ends early once the page is idle).
PAGE_BUDGET_MS = 10_000


def chromium() -> str:
    """Debian's chromium; a missing browser is a failure, not a skip (.ci/run installs it)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("chromium is not installed: apt-get install -y chromium (.ci/run does)")
    return found


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
    data_dir = tmp_path_factory.mktemp("web-ui")
    codec_port = free_port()
    codec_url = f"http://127.0.0.1:{codec_port}"
    processes: list[ManagedProcess] = []
    try:
        temporal, ui_url = await asyncio.to_thread(
            start_temporal, data_dir, ui=True, extra_args=["--ui-codec-endpoint", codec_url]
        )
        processes.append(temporal)
        assert ui_url is not None
        codec = await asyncio.to_thread(start_codec_server, data_dir, {}, codec_port, ui_url)
        processes.append(codec)
        env = {k: v for k, v in os.environ.items() if not k.startswith("TEMPORAL_")}
        env |= {"TEMPORAL_ADDRESS": temporal.address, "TEMPORAL_NAMESPACE": "default"}
        for _ in range(60):  # bounded: the frontend is healthy within ~15 s
            try:
                client = await connect_temporal(env)
                break
            except RuntimeError:
                await asyncio.sleep(0.25)
        else:
            pytest.fail("the dev server never became healthy")
        confirmed = _request(services, CARD_OK, "ok")
        rejected = _request(services, CARD_DECLINED, "declined")
        async with (
            service_clients(checkout_settings) as clients,
            checkout_workers(client, checkout_settings, clients),
        ):
            results = [
                await place_checkout(client, request, checkout_settings.task_queue)
                for request in (confirmed, rejected)
            ]
        yield UiStack(ui_url, client, codec, confirmed, rejected, results)
    finally:
        for proc in reversed(processes):
            proc.stop()


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
