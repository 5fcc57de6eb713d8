"""The Temporal Web UI for the browser tests (tests/e2e/test_web_ui*.py): a dev server with
its UI pointed at a codec server, a client of it, and Debian's Chromium (never downloaded)."""

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from temporalio.client import Client

from stack.launcher import ManagedProcess, free_port, start_codec_server, start_temporal
from worker.clients import connect_temporal

# Chromium's flags for CI, which runs as root (no sandbox there) in a container.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


def chromium() -> str:
    """Debian's chromium; a missing browser is a failure, not a skip (.ci/run installs it)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("chromium is not installed: apt-get install -y chromium (.ci/run does)")
    return found


@dataclass
class WebUi:
    ui_url: str
    client: Client
    codec_server: ManagedProcess


@asynccontextmanager
async def web_ui(data_dir: Path) -> AsyncIterator[WebUi]:
    """A dev server (its database in `data_dir`) with its Web UI, the codec server the UI
    decrypts payloads with, and a client; both processes stopped on the way out."""
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
        yield WebUi(ui_url, client, codec)
    finally:
        for proc in reversed(processes):
            proc.stop()
