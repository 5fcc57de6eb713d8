"""Who may decrypt through the codec server (worker.codec_auth): a static bearer token, a JWT
checked against a JWKS served here, refusals with a clear JSON error, CORS preflights without
a credential, and the `temporal` CLI's `--codec-auth`."""

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from google.protobuf import json_format
from jwt.algorithms import RSAAlgorithm
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.testing import WorkflowEnvironment

from stack.launcher import free_port, start_codec_server, venv_binary
from temporal_saga.codec import EncryptionCodec, keys_from_env
from worker.codec_auth import (
    AUTH_TOKEN_ENV,
    CodecAuth,
    CodecAuthSettings,
    settings_problems,
)
from worker.codec_server import create_codec_app

UI_ORIGIN = "http://127.0.0.1:8233"
TOKEN = "codec-test-token-" + uuid.uuid4().hex
ISSUER = "https://login.example.test/"
AUDIENCE = "temporal-ui"
KID = "test-key-1"
SECRET = b'{"email": "codec-auth@example.com"}'


def _wait_up(url: str) -> None:
    for _ in range(200):  # bounded: 10 s
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    pytest.fail(f"{url} did not answer")


@contextmanager
def serve_app(app: FastAPI) -> Iterator[str]:
    """`app` under uvicorn in a thread on a free loopback port, stopped after."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_up(f"{url}/health")
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def serve_jwks(jwks: dict[str, Any]) -> Iterator[str]:
    """An identity provider's JWKS endpoint (only that) on a free loopback port."""
    body = json.dumps(jwks).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = self.path == "/.well-known/jwks.json"
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body if found else b"{}")

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: pytest shows the failures

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def new_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def signing_key() -> rsa.RSAPrivateKey:
    return new_rsa_key()


@pytest.fixture(scope="module")
def jwks_url(signing_key: rsa.RSAPrivateKey) -> Iterator[str]:
    jwk = RSAAlgorithm.to_jwk(signing_key.public_key(), as_dict=True)
    with serve_jwks({"keys": [{**jwk, "kid": KID, "use": "sig", "alg": "RS256"}]}) as url:
        yield url


def make_jwt(key: rsa.RSAPrivateKey, kid: str = KID, **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "ann", "iat": now, "exp": now + 300}
    return jwt.encode({**body, **claims}, key, algorithm="RS256", headers={"kid": kid})


@pytest.fixture(scope="module")
def codec() -> EncryptionCodec:
    return EncryptionCodec(keys_from_env())


@pytest.fixture(scope="module")
def guarded(codec: EncryptionCodec, jwks_url: str) -> Iterator[str]:
    """A codec server that takes the static token or a JWT of the local JWKS."""
    settings = CodecAuthSettings(
        auth_token=TOKEN, jwks_url=jwks_url, jwt_issuer=ISSUER, jwt_audience=AUDIENCE
    )
    with serve_app(create_codec_app(codec, [UI_ORIGIN], CodecAuth(settings))) as url:
        yield url


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


async def _sealed_body(codec: EncryptionCodec) -> str:
    [sealed] = await codec.encode([Payload(metadata={"encoding": b"json/plain"}, data=SECRET)])
    return json_format.MessageToJson(Payloads(payloads=[sealed]))


def _bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}", "Origin": UI_ORIGIN}


async def _decode(
    http: httpx.AsyncClient, url: str, codec: EncryptionCodec, headers: dict[str, str]
) -> httpx.Response:
    return await http.post(f"{url}/decode", content=await _sealed_body(codec), headers=headers)


def _decoded(response: httpx.Response) -> bytes:
    assert response.status_code == 200, response.text
    [payload] = json_format.Parse(response.text, Payloads()).payloads
    return payload.data


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "missing_credential"),
        ({"Authorization": f"Basic {TOKEN}"}, "missing_credential"),
        ({"Authorization": "Bearer"}, "missing_credential"),
        ({"Authorization": "Bearer not-the-token-at-all"}, "invalid_credential"),
        ({"Authorization": f"Bearer {TOKEN}x"}, "invalid_credential"),
        ({"Authorization": "Bearer a.b.c"}, "invalid_credential"),  # not a JWT at all
    ],
    ids=["none", "basic", "empty", "wrong", "longer", "garbage-jwt"],
)
async def test_refused_without_the_credential_on_decode_and_encode(
    guarded: str,
    codec: EncryptionCodec,
    http: httpx.AsyncClient,
    headers: dict[str, str],
    code: str,
) -> None:
    body = await _sealed_body(codec)
    for path in ("/decode", "/encode"):
        response = await http.post(
            f"{guarded}{path}", content=body, headers={**headers, "Origin": UI_ORIGIN}
        )
        assert response.status_code == 401, response.text
        assert response.json()["code"] == code and response.json()["message"]
        assert response.headers["www-authenticate"].startswith("Bearer")
        # CORS headers on the refusal too, so the UI can read and show it.
        assert response.headers["access-control-allow-origin"] == UI_ORIGIN
        assert SECRET.decode() not in response.text


async def test_the_static_token_decodes_and_encodes(
    guarded: str, codec: EncryptionCodec, http: httpx.AsyncClient
) -> None:
    assert _decoded(await _decode(http, guarded, codec, _bearer(TOKEN))) == SECRET
    plain = json_format.MessageToJson(
        Payloads(payloads=[Payload(metadata={"encoding": b"json/plain"}, data=SECRET)])
    )
    encoded = await http.post(f"{guarded}/encode", content=plain, headers=_bearer(TOKEN))
    assert encoded.status_code == 200, encoded.text
    [back] = await codec.decode(json_format.Parse(encoded.text, Payloads()).payloads)
    assert back.data == SECRET


async def test_a_jwt_signed_by_a_key_of_the_jwks_decodes(
    guarded: str, codec: EncryptionCodec, http: httpx.AsyncClient, signing_key: rsa.RSAPrivateKey
) -> None:
    token = make_jwt(signing_key)
    assert _decoded(await _decode(http, guarded, codec, _bearer(token))) == SECRET


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"exp": int(time.time()) - 3600}, "expired"),
        ({"aud": "another-api"}, "audience"),
        ({"iss": "https://evil.example.test/"}, "issuer"),
        ({"exp": None}, "exp"),  # a token that never expires is not taken
    ],
    ids=["expired", "wrong-audience", "wrong-issuer", "no-exp"],
)
async def test_a_jwt_with_wrong_claims_is_refused(
    guarded: str,
    codec: EncryptionCodec,
    http: httpx.AsyncClient,
    signing_key: rsa.RSAPrivateKey,
    claims: dict[str, Any],
    message: str,
) -> None:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "ann", "iat": now, "exp": now + 300}
    body.update(claims)
    token = jwt.encode(
        {k: v for k, v in body.items() if v is not None},
        signing_key,
        algorithm="RS256",
        headers={"kid": KID},
    )
    response = await _decode(http, guarded, codec, _bearer(token))
    assert response.status_code == 401, response.text
    assert response.json()["code"] == "invalid_credential"
    assert message in response.json()["message"], response.json()
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


async def test_a_jwt_signed_by_another_key_is_refused(
    guarded: str, codec: EncryptionCodec, http: httpx.AsyncClient
) -> None:
    forger = new_rsa_key()
    for token in (make_jwt(forger), make_jwt(forger, kid="unknown-key")):
        response = await _decode(http, guarded, codec, _bearer(token))
        assert response.status_code == 401, response.text
        assert response.json()["code"] == "invalid_credential"


async def test_health_and_the_cors_preflight_need_no_credential(
    guarded: str, http: httpx.AsyncClient
) -> None:
    assert (await http.get(f"{guarded}/health")).status_code == 200
    preflight = await http.options(
        f"{guarded}/decode",
        headers={
            "Origin": UI_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,x-namespace",
        },
    )
    assert preflight.status_code == 200, preflight.text
    assert preflight.headers["access-control-allow-origin"] == UI_ORIGIN
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()


async def test_an_unreachable_jwks_refuses_with_503(
    codec: EncryptionCodec, http: httpx.AsyncClient, signing_key: rsa.RSAPrivateKey
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}/.well-known/jwks.json"  # nobody listens
    settings = CodecAuthSettings(jwks_url=nowhere, jwt_issuer=ISSUER, jwt_audience=AUDIENCE)
    with serve_app(create_codec_app(codec, [UI_ORIGIN], CodecAuth(settings))) as url:
        response = await _decode(http, url, codec, _bearer(make_jwt(signing_key)))
    assert response.status_code == 503, response.text
    assert response.json()["code"] == "jwks_unavailable"


async def test_no_credential_configured_is_open(
    codec: EncryptionCodec, http: httpx.AsyncClient
) -> None:
    """As the dev stack runs it (the dev UI cannot send one): on loopback, for anyone."""
    auth = CodecAuth.open()
    assert not auth.required and auth.describe() is None
    with serve_app(create_codec_app(codec, [UI_ORIGIN], auth)) as url:
        assert _decoded(await _decode(http, url, codec, {})) == SECRET


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({AUTH_TOKEN_ENV: "short"}, "CHECKOUT_CODEC_AUTH_TOKEN: Value error, at least 16"),
        ({"CHECKOUT_CODEC_JWKS_URL": "https://idp.example.test/jwks"}, "JWT_ISSUER"),
        ({"CHECKOUT_CODEC_JWKS_URL": "not a url"}, "CHECKOUT_CODEC_JWKS_URL"),
        ({"CHECKOUT_CODEC_JWT_ALGORITHMS": "RS256,HS256"}, "not an asymmetric"),
    ],
    ids=["short-token", "jwks-without-issuer", "bad-url", "symmetric-alg"],
)
def test_the_codec_server_refuses_to_start_with_bad_settings(
    tmp_path: Path, env: dict[str, str], problem: str
) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CHECKOUT_CODEC_")}
    clean["SAGA_CODEC_KEYS"] = os.environ["SAGA_CODEC_KEYS"]
    done = subprocess.run(
        [sys.executable, "-m", "worker.codec_server", "--port", "0"],
        cwd=tmp_path,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "refusing to start" in done.stderr and problem in done.stderr, done.stderr
    assert "short'" not in done.stderr  # the value given is never shown


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(AUTH_TOKEN_ENV, TOKEN)
    monkeypatch.setenv("CHECKOUT_CODEC_JWT_ALGORITHMS", "RS256, PS256")
    settings = CodecAuthSettings()
    assert settings.auth_token is not None and settings.auth_token.get_secret_value() == TOKEN
    assert settings.jwt_algorithms == ("RS256", "PS256")
    assert TOKEN not in repr(settings)
    monkeypatch.setenv(AUTH_TOKEN_ENV, "")  # empty is unset: how the launcher turns it off
    assert not CodecAuth(CodecAuthSettings()).required
    monkeypatch.setenv(AUTH_TOKEN_ENV, "tiny")
    with pytest.raises(ValueError) as caught:
        CodecAuthSettings()
    assert "tiny" not in settings_problems(caught.value)  # type: ignore[arg-type]


# --- The `temporal` CLI through a codec server that wants a token ------------------------


async def test_temporal_workflow_show_decodes_with_codec_auth(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    email = f"cli-{uuid.uuid4().hex[:8]}@example.com"
    # No worker needed: the start event alone holds the input, encrypted by this client.
    handle = await dev_env.client.start_workflow(
        "CodecAuthProbe",
        {"email": email},
        id=f"codec-auth-{uuid.uuid4().hex[:8]}",
        task_queue=f"nobody-{uuid.uuid4().hex[:8]}",
    )
    port = free_port()
    codec_server = await asyncio.to_thread(start_codec_server, tmp_path, {}, port, UI_ORIGIN, TOKEN)
    address = dev_env.client.service_client.config.target_host

    def show(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                str(venv_binary("temporal")),
                "workflow",
                "show",
                "--workflow-id",
                handle.id,
                "--address",
                address,
                "--detailed",  # payloads shown as their decoded fields
                "--codec-endpoint",
                f"http://127.0.0.1:{port}",
                *extra,
            ],
            env={k: v for k, v in os.environ.items() if not k.startswith("TEMPORAL_")},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    try:
        shown = await asyncio.to_thread(show, "--codec-auth", f"Bearer {TOKEN}")
        assert shown.returncode == 0, shown.stderr
        assert f"input[0].email: {email}" in shown.stdout  # decoded by the codec server
        # Refused, the CLI retries until its deadline, then fails: keep the deadline short.
        for auth in ([], ["--codec-auth", "Bearer wrong-token-0123456789"]):
            refused = await asyncio.to_thread(show, *auth, "--command-timeout", "5s")
            assert refused.returncode != 0 and email not in refused.stdout, refused.stdout
    finally:
        await asyncio.to_thread(codec_server.stop)
        await handle.terminate("test over")
