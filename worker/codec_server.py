"""The codec server: lets the Temporal Web UI (and `temporal` CLI) show encrypted payloads.

    python -m worker.codec_server --port 8081 [--ui-origin http://localhost:8233 ...]
    checkout-saga codec-server --port 8081 [--ui-origin ...]           # the same

`POST /decode` and `POST /encode` take and answer `{"payloads": [...]}` (Temporal's protobuf
JSON, as the UI sends it), using the keys of CHECKOUT_CODEC_KEYS (worker.codec). Point the UI
at it with `temporal server start-dev --ui-codec-endpoint http://127.0.0.1:8081` (or the UI's
Settings, "Codec Server"). The browser calls it directly, so it answers CORS only for the UI
origins given. It decrypts for whoever can reach it: keep it on loopback or behind your own
authentication.
"""

import argparse
import sys
from collections.abc import Awaitable, Callable, Iterable, Sequence

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from google.protobuf import json_format
from pydantic import BaseModel
from temporalio.api.common.v1 import Payload, Payloads

from worker.codec import CodecKeyError, EncryptionCodec, keys_from_env

DEFAULT_UI_ORIGINS = ("http://localhost:8233", "http://127.0.0.1:8233")

Apply = Callable[[Iterable[Payload]], Awaitable[list[Payload]]]


class Health(BaseModel):
    status: str
    key_id: str


def create_codec_app(codec: EncryptionCodec, ui_origins: Sequence[str]) -> FastAPI:
    app = FastAPI(title="checkout-saga codec server")
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(ui_origins),
        allow_methods=["POST"],
        allow_headers=["content-type", "x-namespace", "authorization"],
    )

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

    @app.post("/decode")
    async def decode(request: Request) -> Response:
        return await apply(codec.decode, request)

    @app.post("/encode")
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
            raise CodecKeyError("CHECKOUT_CODEC_KEYS is not set: nothing to decode with")
    except CodecKeyError as err:
        parser.exit(2, f"refusing to start: {err}\n")
    app = create_codec_app(EncryptionCodec(keys), args.ui_origin or DEFAULT_UI_ORIGINS)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main(sys.argv[1:])
