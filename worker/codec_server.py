"""The codec server: lets the Temporal Web UI (and `temporal` CLI) show encrypted payloads.

    python -m worker.codec_server --port 8081 [--ui-origin http://localhost:8233 ...]
    checkout-saga codec-server --port 8081 [--ui-origin ...]           # the same

`POST /decode` and `POST /encode` take and answer `{"payloads": [...]}` (Temporal's protobuf
JSON, as the UI sends it), using the keys of SAGA_CODEC_KEYS (temporal_saga.codec). Point the UI
at it with `temporal server start-dev --ui-codec-endpoint http://127.0.0.1:8081` (or the UI's
Settings, "Codec Server"). The browser calls it directly, so it answers CORS only for the UI
origins given (a preflight needs no credential: browsers send none with it).

Who may call /decode and /encode: worker.codec_auth (a static bearer token, and/or a JWT the
UI forwards, checked against a JWKS). With no credential configured it decrypts for whoever
can reach it, and its first line says so: keep it on loopback then.
"""

import argparse
import sys
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Annotated

import uvicorn
from fastapi import Depends, FastAPI, Header, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from google.protobuf import json_format
from pydantic import BaseModel, ValidationError
from temporalio.api.common.v1 import Payload, Payloads

from temporal_saga.codec import CodecKeyError, EncryptionCodec, keys_from_env
from worker.codec_auth import (
    AUTH_TOKEN_ENV,
    JWKS_URL_ENV,
    CodecAuth,
    CodecAuthError,
    settings_problems,
)

DEFAULT_UI_ORIGINS = ("http://localhost:8233", "http://127.0.0.1:8233")
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})

Apply = Callable[[Iterable[Payload]], Awaitable[list[Payload]]]


class Health(BaseModel):
    status: str
    key_id: str


def describe(host: str, port: int, ui_origins: Sequence[str], auth: CodecAuth) -> str:
    """The one line a codec server says when it starts: where, for which UI, for whom."""
    loopback = host in LOOPBACK_HOSTS
    where = "loopback only" if loopback else f"listening on {host}"
    needs = auth.describe()
    if needs is None:
        who = "anyone on this machine" if loopback else "anyone who can reach it"
        needs = (
            f"NO CREDENTIAL: {who} can decrypt payloads through it "
            f"(set {AUTH_TOKEN_ENV} or {JWKS_URL_ENV} to require one)"
        )
    origins = ", ".join(ui_origins)
    return f"Codec server http://{host}:{port} ({where}; CORS for {origins}): {needs}"


def create_codec_app(codec: EncryptionCodec, ui_origins: Sequence[str], auth: CodecAuth) -> FastAPI:
    app = FastAPI(title="checkout-saga codec server")
    # Outermost: it answers preflights itself, and adds its headers to a 401 too, so the UI
    # can show why it was refused.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(ui_origins),
        allow_methods=["POST"],
        allow_headers=["content-type", "x-namespace", "authorization"],
    )

    @app.exception_handler(CodecAuthError)
    async def refused(request: Request, err: CodecAuthError) -> JSONResponse:
        body = {"code": err.code, "message": err.message}
        return JSONResponse(body, err.status, headers=err.headers)

    # A plain function: FastAPI runs it in its threadpool, where a JWKS fetch may block.
    def authorized(authorization: Annotated[str | None, Header()] = None) -> None:
        auth.check(authorization)

    guarded = [Depends(authorized)]

    async def apply(fn: Apply, request: Request) -> Response:
        try:
            payloads = json_format.Parse(await request.body(), Payloads())
        except json_format.ParseError as err:
            return JSONResponse({"code": "invalid_request", "message": str(err)}, 400)
        try:
            result = Payloads(payloads=await fn(payloads.payloads))
        except CodecKeyError as err:
            return JSONResponse({"code": "codec_key", "message": str(err)}, 400)
        return Response(json_format.MessageToJson(result), media_type="application/json")

    @app.post("/decode", dependencies=guarded)
    async def decode(request: Request) -> Response:
        return await apply(codec.decode, request)

    @app.post("/encode", dependencies=guarded)
    async def encode(request: Request) -> Response:
        return await apply(codec.encode, request)

    @app.get("/health")
    def health() -> Health:
        return Health(status="ok", key_id=codec.key_id)

    return app


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m worker.codec_server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument(
        "--ui-origin",
        action="append",
        help=f"a Web UI origin allowed to call it (repeatable; default {DEFAULT_UI_ORIGINS})",
    )
    args = parser.parse_args(argv)
    try:
        keys = keys_from_env()
        if not keys:
            raise CodecKeyError("SAGA_CODEC_KEYS is not set: nothing to decode with")
        auth = CodecAuth.from_env()
    except CodecKeyError as err:
        parser.exit(2, f"refusing to start: {err}\n")
    except ValidationError as err:
        parser.exit(2, f"refusing to start: {settings_problems(err)}\n")
    origins = args.ui_origin or DEFAULT_UI_ORIGINS
    print(describe(args.host, args.port, origins, auth), file=sys.stderr, flush=True)
    app = create_codec_app(EncryptionCodec(keys), origins, auth)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main(sys.argv[1:])
