"""No card number in Temporal: checkouts placed as a user places them (the CLI tokenizes the
card first), then every payload of every workflow history on the server, decoded through
the payload codec and, raw, base64-decoded, is searched for card numbers; so are the
recorded histories in tests/histories/ and the worker's log lines.

And the net it searches with, tests.support.card_numbers.find_card_numbers: what it finds,
and what it leaves alone."""

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload
from temporalio.testing import WorkflowEnvironment

from models.checkout import checkout_workflow_id
from models.payments import CARD_DECLINED, CARD_FLAKY, CARD_OK
from tests.support.card_numbers import find_card_numbers
from tests.support.cli import run_cli
from tests.support.shop import Shop
from worker.settings import Settings

HISTORIES = Path(__file__).parents[1] / "histories"
TEST_CARDS = {CARD_OK, CARD_DECLINED, CARD_FLAKY}


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)
    elif isinstance(node, str):
        yield node


def _with_base64_decoded(text: str, doc: Any = None) -> str:
    """The history's JSON text, and every string in it that decodes as base64 (a payload's
    data, metadata), decoded: what anyone reading the raw history sees. `doc`: the text
    already parsed."""
    parts = [text]
    for value in _strings(json.loads(text) if doc is None else doc):
        if len(value) >= 16:
            with contextlib.suppress(binascii.Error, ValueError):
                parts.append(base64.b64decode(value, validate=True).decode(errors="replace"))
    return "\n".join(parts)


def _payloads(node: Any) -> Iterator[dict[str, Any]]:
    """Every Payload in a history as JSON (anything with metadata and data)."""
    if isinstance(node, dict):
        if "metadata" in node and "data" in node:
            yield node
        for value in node.values():
            yield from _payloads(value)
    elif isinstance(node, list):
        for item in node:
            yield from _payloads(item)


@pytest.mark.usefixtures("checkout_worker")
async def test_no_history_payload_log_or_recording_holds_a_card_number(
    dev_env: WorkflowEnvironment,
    checkout_settings: Settings,
    services: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    shop = Shop(services)
    sku = shop.new_sku(20, 1100)
    caplog.set_level(logging.INFO)
    placed = []

    async def checkout(card: str, *options: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(
            run_cli,
            dev_env,
            checkout_settings,
            "checkout",
            *("--item", f"{sku}:1", "--email", "cards@example.com", "--card", card),
            *options,
        )

    for card in sorted(TEST_CARDS):
        done = await checkout(card, "--json")
        assert done.stdout.strip(), done.stderr
        placed.append(json.loads(done.stdout)["order_id"])
    # A card number where the token goes is refused before anything starts.
    refused = await checkout("4242 4242 4242 4241")
    assert refused.returncode == 2 and "Luhn" in refused.stdout + refused.stderr
    client = dev_env.client
    for order_id in placed:
        await client.get_workflow_handle(checkout_workflow_id(order_id)).result()

    codec = client.data_converter.payload_codec
    assert codec is not None, "the tests' server encrypts payloads, as production does"
    found: dict[str, list[str]] = {}
    checked = 0
    async for execution in client.list_workflows():
        handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
        text = (await handle.fetch_history()).to_json()
        doc = json.loads(text)
        payloads = [json_format.ParseDict(raw, Payload()) for raw in _payloads(doc)]
        decoded = [plain.data.decode(errors="replace") for plain in await codec.decode(payloads)]
        cards = find_card_numbers(_with_base64_decoded(text, doc) + "\n".join(decoded))
        if cards:
            found[execution.id] = cards
        checked += 1
    assert checked >= len(placed)
    assert found == {}, f"card numbers in histories: {found}"

    for recorded in sorted(HISTORIES.glob("**/*.json")):
        assert find_card_numbers(_with_base64_decoded(recorded.read_text())) == [], recorded
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert find_card_numbers(logged) == []


# -- the net: what find_card_numbers finds, and what it leaves alone --------------------------


@pytest.mark.parametrize(
    "written",
    [
        "4242424242424242",
        "4242 4242 4242 4242",
        "4242-4242-4242-4242",
        "4242 4242-4242 4242",
        "4242424242 424242",
    ],
)
def test_finds_a_card_however_it_is_grouped(written: str) -> None:
    assert find_card_numbers(f"card: {written}.") == [CARD_OK]


def test_finds_cards_in_json_in_a_token_and_beside_other_numbers() -> None:
    text = json.dumps({"card_number": CARD_DECLINED, "note": f"pm_{CARD_FLAKY}"})
    assert find_card_numbers(text) == [CARD_DECLINED, CARD_FLAKY]
    # A card followed by another group (an expiry year) is still found.
    assert find_card_numbers("4242 4242 4242 4242 2031") == [CARD_OK]


@pytest.mark.parametrize("digits", [12, 13, 15, 16, 19])
def test_finds_every_card_length(digits: int) -> None:
    body = "5" + "0" * (digits - 2)
    card = next(body + d for d in "0123456789" if find_card_numbers(body + d))
    assert find_card_numbers(f"x {card} y") == [card]


@pytest.mark.parametrize(
    "text",
    [
        "4242424242424241",  # fails the Luhn check
        "42424242424",  # 11 digits
        "42424242424242424242",  # 20 digits run together: no card's length
        "order ab4242424242424242",  # glued to letters: part of an identifier
        "4242424242424242cd",
        "2026-12-01T22:33:50.515032Z",  # a timestamp
        "row 00 2026-12-02 00:13:14 42",  # a date among other numbers
        "ids 1 2 3 4 5 6 7 8 9 10 11",  # small numbers, far apart
        "",
    ],
)
def test_leaves_other_numbers_alone(text: str) -> None:
    assert find_card_numbers(text) == []


def test_uuids_are_not_cards() -> None:
    # Every all-digit UUID stretch whose digits pass Luhn would otherwise be reported.
    text = " ".join(f"{uuid.UUID(int=n * 7919)}" for n in range(1, 2000))
    assert find_card_numbers(text) == []
    assert find_card_numbers("12345678-1234-1234-1234-123456789012") == []


def test_each_card_reported_once_in_order() -> None:
    text = f"{CARD_DECLINED} then {CARD_OK} and {CARD_DECLINED} again"
    assert find_card_numbers(text) == [CARD_DECLINED, CARD_OK]
