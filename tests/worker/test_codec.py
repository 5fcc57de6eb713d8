"""Encrypted payloads (temporal_saga.codec): no payment token or email in clear in any history (and
no card number at all: checkouts carry a token), key rotation, clear errors, and the codec
server the Web UI decodes with."""

import base64
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from models.checkout import CartItem, CheckoutRequest, CheckoutResult, checkout_workflow_id
from models.events import ORDER_CONFIRMED, event_id
from models.fanout import (
    RECEIPT_CONSUMER,
    SHIPPING_CONSUMER,
    analytics_workflow_id,
    loyalty_workflow_id,
)
from stack.launcher import free_port
from starter.checkouts import place_checkout
from starter.replay import replayer
from temporal_saga.codec import (
    CODEC_KEYS_ENV,
    ENCODING,
    KEY_ID_METADATA,
    CodecKey,
    CodecKeyError,
    EncryptionCodec,
    data_converter,
    format_keys,
    keys_from_env,
    new_key,
    parse_keys,
)
from temporal_saga.models import Outcome
from tests.support.card_numbers import find_card_numbers
from tests.support.cards import card_token, random_card
from tests.support.stock import new_stocked_sku
from worker.codec_auth import CodecAuth
from worker.codec_server import create_codec_app
from worker.runner import WORKFLOWS
from worker.settings import Settings
from workflows.checkout import CheckoutWorkflow
from workflows.fanout import job_id

SECRET = b'{"card_number": "4242424242424242", "email": "ann@example.com"}'


def plain(data: bytes = SECRET) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=data)


async def test_round_trip_and_nothing_in_clear() -> None:
    codec = EncryptionCodec([new_key("k1")])
    [sealed] = await codec.encode([plain()])
    assert sealed.metadata["encoding"] == ENCODING
    assert sealed.metadata[KEY_ID_METADATA] == b"k1"
    assert b"4242" not in sealed.SerializeToString() and b"ann@" not in sealed.data
    [again] = await codec.encode([plain()])
    assert again.data != sealed.data  # a fresh nonce each time
    assert await codec.decode([sealed]) == [plain()]


async def test_rotation_old_payloads_still_open_new_ones_use_the_new_key() -> None:
    k1, k2 = new_key("k1"), new_key("k2")
    [old] = await EncryptionCodec([k1]).encode([plain()])
    rotated = EncryptionCodec(parse_keys(format_keys([k2, k1])))
    assert rotated.key_id == "k2"
    assert await rotated.decode([old]) == [plain()]
    [new] = await rotated.encode([plain()])
    assert new.metadata[KEY_ID_METADATA] == b"k2"
    # Once k1 is retired, what it sealed no longer opens, and the error says which key.
    with pytest.raises(CodecKeyError, match=r"key id 'k1'.*not in SAGA_CODEC_KEYS.*k2"):
        await EncryptionCodec([k2]).decode([old])


async def test_a_wrong_key_or_an_altered_payload_is_a_clear_error() -> None:
    [sealed] = await EncryptionCodec([new_key("k1")]).encode([plain()])
    with pytest.raises(CodecKeyError, match="key id 'k1' does not decrypt"):
        await EncryptionCodec([new_key("k1")]).decode([sealed])
    codec = EncryptionCodec([new_key("k1")])
    [sealed] = await codec.encode([plain()])
    tampered = Payload(metadata=sealed.metadata, data=sealed.data[:-1] + b"\x00")
    with pytest.raises(CodecKeyError, match="altered"):
        await codec.decode([tampered])
    # The key id is bound to the ciphertext: relabelling it does not fool the cipher.
    two = EncryptionCodec([new_key("k2"), *parse_keys(format_keys([CodecKey("k1", b"k" * 32)]))])
    [sealed] = await two.encode([plain()])
    relabelled = Payload(metadata={**sealed.metadata, KEY_ID_METADATA: b"k1"}, data=sealed.data)
    with pytest.raises(CodecKeyError, match="does not decrypt"):
        await two.decode([relabelled])


async def test_payloads_recorded_in_clear_pass_through() -> None:
    codec = EncryptionCodec([new_key("k1")])
    recorded = [plain(), Payload(metadata={"encoding": b"binary/null"})]
    assert await codec.decode(recorded) == recorded


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("k1", "expected KEY_ID:BASE64_KEY"),
        ("k1:not base64!", "not base64"),
        (f"k1:{base64.b64encode(b'short').decode()}", "5 bytes, need 32"),
        (f"bad id:{base64.b64encode(b'x' * 32).decode()}", "key id 'bad id'"),
        (format_keys([CodecKey("k1", b"a" * 32), CodecKey("k1", b"b" * 32)]), "appears twice"),
    ],
)
def test_bad_keys_are_refused_without_showing_them(value: str, error: str) -> None:
    with pytest.raises(CodecKeyError, match=error) as caught:
        parse_keys(value)
    secret = value.partition(":")[2]
    assert not secret or secret not in str(caught.value)


def test_keys_come_from_the_environment() -> None:
    assert keys_from_env({}) == [] and keys_from_env({CODEC_KEYS_ENV: " "}) == []
    key = new_key("prod-2025")
    assert keys_from_env({CODEC_KEYS_ENV: format_keys([key])}) == [key]
    assert "prod-2025" in repr(key) and base64.b64encode(key.key).decode() not in repr(key)
    assert data_converter({}) is pydantic_data_converter
    assert isinstance(
        data_converter({CODEC_KEYS_ENV: format_keys([key])}).payload_codec, EncryptionCodec
    )


# --- A real checkout: what the server stores --------------------------------------------------


def _clear_text(node: Any) -> str:
    """Everything a history's JSON holds, with every payload's bytes decoded as text."""
    parts: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key == "data" and isinstance(item, str):
                    parts.append(base64.b64decode(item).decode("utf-8", errors="replace"))
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        else:
            parts.append(str(value))

    walk(node)
    return "\n".join(parts)


async def _stored_histories(client: Client, request: CheckoutRequest) -> str:
    """Raw (never decoded) histories of every workflow the order's data went to: the
    checkout, its receipt and shipment jobs, the customer's loyalty, the order's analytics
    shard."""
    checkout = checkout_workflow_id(request.order_id)
    confirmed = event_id(checkout, ORDER_CONFIRMED)
    texts = []
    for workflow_id in (
        checkout,
        job_id(confirmed, RECEIPT_CONSUMER),
        job_id(confirmed, SHIPPING_CONSUMER),
        loyalty_workflow_id(request.customer_id),
        analytics_workflow_id(request.order_id),
    ):
        history = await client.get_workflow_handle(workflow_id).fetch_history()
        texts.append(_clear_text(history.to_json_dict()))
    return "\n".join(texts)


def checkout_request(services: dict[str, str], card: str, email: str) -> CheckoutRequest:
    """A checkout paid with `card`, tokenized first (as a shop's front end does)."""
    sku = new_stocked_sku(services, "ENC")
    return CheckoutRequest(
        order_id=f"enc-{uuid.uuid4().hex[:10]}",
        customer_id=f"cust-{uuid.uuid4().hex[:8]}",
        email=email,
        payment_token=card_token(services["payments"], card),
        items=[CartItem(sku=sku, quantity=1)],
    )


async def test_histories_hold_no_payment_token_or_email_in_clear(
    dev_env: WorkflowEnvironment,
    checkout_worker: Worker,
    checkout_settings: Settings,
    services: dict[str, str],
) -> None:
    card, email = random_card(), f"enc-{uuid.uuid4().hex[:8]}@example.com"
    request = checkout_request(services, card, email)
    result = await place_checkout(dev_env.client, request, checkout_settings.task_queue)
    # The codec-enabled client reads everything back.
    assert result.status is Outcome.CONFIRMED, result
    assert result.order_id == request.order_id

    # A client without the codec reads the stored bytes.
    raw = Client(dev_env.client.service_client, namespace=dev_env.client.namespace)
    handle = raw.get_workflow_handle(checkout_workflow_id(request.order_id))
    history = await handle.fetch_history()
    inputs = history.events[0].workflow_execution_started_event_attributes.input.payloads
    assert [p.metadata["encoding"] for p in inputs] == [ENCODING]
    assert inputs[0].metadata[KEY_ID_METADATA] == b"tests"
    with pytest.raises(Exception, match="binary/encrypted"):
        await handle.result()
    stored = await _stored_histories(raw, request)
    assert request.order_id in stored  # the test does read the histories (ids are in clear)
    assert card not in stored and card[-4:] + '"' not in stored
    assert request.payment_token not in stored
    assert email not in stored and email.split("@")[0] not in stored


async def test_the_check_finds_data_in_clear_when_a_client_has_no_codec(
    dev_env: WorkflowEnvironment,
    checkout_worker: Worker,
    checkout_settings: Settings,
    services: dict[str, str],
) -> None:
    """The net above can fail: a checkout started by a client without the codec leaves the
    request in clear, the check finds it, and the worker still runs it (pass-through). The
    card's number is not there even so: the request carries its token."""
    card, email = random_card(), f"clear-{uuid.uuid4().hex[:8]}@example.com"
    request = checkout_request(services, card, email)
    raw = Client(
        dev_env.client.service_client,
        namespace=dev_env.client.namespace,
        data_converter=pydantic_data_converter,
    )
    handle = await raw.start_workflow(
        CheckoutWorkflow.run,
        request,
        id=checkout_workflow_id(request.order_id),
        task_queue=checkout_settings.task_queue,
    )
    decoded: WorkflowHandle[CheckoutWorkflow, CheckoutResult] = (
        dev_env.client.get_workflow_handle_for(CheckoutWorkflow.run, handle.id)
    )
    assert (await decoded.result()).status is Outcome.CONFIRMED
    stored = await _stored_histories(raw, request)
    assert request.payment_token in stored and email in stored
    assert card not in stored and find_card_numbers(stored) == []


# --- The codec server -------------------------------------------------------------------------

UI_ORIGIN = "http://127.0.0.1:8233"


@pytest.fixture(scope="module")
def codec_server() -> Iterator[tuple[str, EncryptionCodec]]:
    """The codec server app in a uvicorn thread on a free loopback port."""
    import threading

    codec = EncryptionCodec(keys_from_env())
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_codec_app(codec, [UI_ORIGIN], CodecAuth.open()),
            host="127.0.0.1",
            port=port,
            log_level="warning",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):  # bounded: 10 s
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        threading.Event().wait(0.05)
    else:
        pytest.fail("codec server did not start")
    yield url, codec
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


def _body(*payloads: Payload) -> str:
    return json_format.MessageToJson(Payloads(payloads=list(payloads)))


async def test_codec_server_decodes_and_encodes_like_the_worker(
    codec_server: tuple[str, EncryptionCodec], http: httpx.AsyncClient
) -> None:
    url, codec = codec_server
    [sealed] = await codec.encode([plain()])
    headers = {"Origin": UI_ORIGIN, "X-Namespace": "default"}
    response = await http.post(f"{url}/decode", content=_body(sealed), headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == UI_ORIGIN
    decoded = json_format.Parse(response.text, Payloads())
    assert list(decoded.payloads) == [plain()]
    assert json.loads(base64.b64decode(response.json()["payloads"][0]["data"]))["card_number"]

    encoded = await http.post(f"{url}/encode", content=_body(plain()), headers=headers)
    [back] = await codec.decode(json_format.Parse(encoded.text, Payloads()).payloads)
    assert back == plain()


async def test_codec_server_answers_cors_only_for_the_ui_origin(
    codec_server: tuple[str, EncryptionCodec], http: httpx.AsyncClient
) -> None:
    url, _ = codec_server
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-namespace",
    }
    ok = await http.options(f"{url}/decode", headers={"Origin": UI_ORIGIN, **preflight})
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == UI_ORIGIN
    other = await http.options(
        f"{url}/decode", headers={"Origin": "https://evil.example", **preflight}
    )
    assert other.status_code == 400 and "access-control-allow-origin" not in other.headers


async def test_codec_server_names_an_unknown_key(
    codec_server: tuple[str, EncryptionCodec], http: httpx.AsyncClient
) -> None:
    url, _ = codec_server
    [foreign] = await EncryptionCodec([new_key("retired")]).encode([plain()])
    response = await http.post(f"{url}/decode", content=_body(foreign))
    assert response.status_code == 400
    assert response.json()["code"] == "codec_key" and "'retired'" in response.json()["message"]
    bad = await http.post(f"{url}/decode", content=b"{not json")
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_request"


def test_codec_server_refuses_to_start_without_keys(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != CODEC_KEYS_ENV}
    done = subprocess.run(
        [str(Path(sys.executable).parent / "checkout-saga"), "codec-server", "--port", "0"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "refusing to start" in done.stderr and CODEC_KEYS_ENV in done.stderr


async def test_encrypted_histories_replay_with_the_keys_only(
    dev_env: WorkflowEnvironment,
    checkout_worker: Worker,
    checkout_settings: Settings,
    services: dict[str, str],
) -> None:
    request = checkout_request(services, random_card(), "replay-enc@example.com")
    await place_checkout(dev_env.client, request, checkout_settings.task_queue)
    handle = dev_env.client.get_workflow_handle(checkout_workflow_id(request.order_id))
    history = await handle.fetch_history()
    await replayer().replay_workflow(history)  # SAGA_CODEC_KEYS holds the key
    without_keys = Replayer(workflows=WORKFLOWS, data_converter=pydantic_data_converter)
    result = await without_keys.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is not None
    assert "binary/encrypted" in str(result.replay_failure), result.replay_failure
