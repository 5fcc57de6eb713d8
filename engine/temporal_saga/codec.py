"""Encrypted payloads: every workflow and activity input, result, and failure message is
AES-256-GCM encrypted before it leaves the process, so histories hold no card number or email
in clear.

Keys come from the environment, `SAGA_CODEC_KEYS="k2:BASE64,k1:BASE64"` (each key 32 bytes,
standard base64): the first one encrypts, every one decrypts, so a key is rotated by putting
the new one first and keeping the old ones until no history that needs them is kept. Each
encrypted payload says which key it used (metadata `encryption-key-id`, also bound into the
cipher as associated data). A payload without the `binary/encrypted` encoding is passed
through unchanged: histories recorded before encryption still replay.

AES-GCM comes from `cryptography`, the engine's `encryption` extra
(`pip install 'temporal-saga[encryption]'`); without it, setting the keys is refused.
"""

import base64
import binascii
import dataclasses
import functools
import logging
import os
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence

from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverter, PayloadCodec

CODEC_KEYS_ENV = "SAGA_CODEC_KEYS"
ENCODING = b"binary/encrypted"
KEY_ID_METADATA = "encryption-key-id"
KEY_BYTES = 32
NONCE_BYTES = 12
_KEY_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

log = logging.getLogger(__name__)


class CodecKeyError(ValueError):
    """Keys that cannot be used, or a payload no configured key can open."""


@dataclasses.dataclass(frozen=True)
class CodecKey:
    key_id: str
    key: bytes = dataclasses.field(repr=False)

    def __post_init__(self) -> None:
        if not _KEY_ID.match(self.key_id):
            raise CodecKeyError(f"key id {self.key_id!r}: use 1-64 of A-Z a-z 0-9 . _ -")
        if len(self.key) != KEY_BYTES:
            raise CodecKeyError(f"key {self.key_id!r}: {len(self.key)} bytes, need {KEY_BYTES}")


def new_key(key_id: str) -> CodecKey:
    return CodecKey(key_id, secrets.token_bytes(KEY_BYTES))


def format_keys(keys: Sequence[CodecKey]) -> str:
    """The SAGA_CODEC_KEYS value for these keys (the first one encrypts)."""
    return ",".join(f"{k.key_id}:{base64.b64encode(k.key).decode()}" for k in keys)


def parse_keys(value: str) -> list[CodecKey]:
    """`id:base64,id:base64` -> keys; the error names the entry but never shows a key."""
    keys: list[CodecKey] = []
    for position, entry in enumerate(value.split(","), start=1):
        key_id, sep, encoded = entry.strip().partition(":")
        if not sep:
            raise CodecKeyError(f"{CODEC_KEYS_ENV} entry {position}: expected KEY_ID:BASE64_KEY")
        try:
            key = base64.b64decode(encoded.strip(), validate=True)
        except binascii.Error as err:
            raise CodecKeyError(
                f"{CODEC_KEYS_ENV} entry {position} ({key_id!r}): not base64"
            ) from err
        keys.append(CodecKey(key_id.strip(), key))
    ids = [k.key_id for k in keys]
    if len(set(ids)) != len(ids):
        raise CodecKeyError(f"{CODEC_KEYS_ENV}: a key id appears twice ({', '.join(ids)})")
    return keys


def keys_from_env(env: Mapping[str, str] | None = None) -> list[CodecKey]:
    """The keys of SAGA_CODEC_KEYS in `env` (default: the process environment); none when
    it is unset or empty."""
    value = (os.environ if env is None else env).get(CODEC_KEYS_ENV, "").strip()
    return parse_keys(value) if value else []


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM, 12-byte random nonce before the ciphertext, the key id as associated data
    (the idiom of Temporal's samples-python `encryption` sample, plus rotation)."""

    def __init__(self, keys: Sequence[CodecKey]) -> None:
        if not keys:
            raise CodecKeyError("an encryption codec needs at least one key")
        try:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        except ImportError as err:
            raise CodecKeyError(
                f"{CODEC_KEYS_ENV} is set, and encrypting needs the `cryptography` package: "
                "pip install 'temporal-saga[encryption]'"
            ) from err
        super().__init__()
        self._current = keys[0].key_id
        self._ciphers = {k.key_id: AESGCM(k.key) for k in keys}

    @property
    def key_id(self) -> str:
        """The key new payloads are encrypted with."""
        return self._current

    async def encode(self, payloads: Iterable[Payload]) -> list[Payload]:
        return [self.encrypt(p) for p in payloads]

    async def decode(self, payloads: Iterable[Payload]) -> list[Payload]:
        return [self.decrypt(p) for p in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        key_id = self._current.encode()
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self._current].encrypt(nonce, payload.SerializeToString(), key_id)
        return Payload(
            metadata={"encoding": ENCODING, KEY_ID_METADATA: key_id}, data=nonce + sealed
        )

    def decrypt(self, payload: Payload) -> Payload:
        from cryptography.exceptions import InvalidTag

        if payload.metadata.get("encoding") != ENCODING:
            return payload  # not ours (recorded before encryption): as it is
        key_id = payload.metadata.get(KEY_ID_METADATA, b"").decode(errors="replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            known = ", ".join(self._ciphers)
            raise CodecKeyError(
                f"payload encrypted with key id {key_id!r}, which is not in "
                f"{CODEC_KEYS_ENV} (known: {known})"
            )
        try:
            plain = cipher.decrypt(
                payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:], key_id.encode()
            )
        except InvalidTag as err:
            raise CodecKeyError(
                f"payload with key id {key_id!r} does not decrypt: the key under that id "
                "is not the one it was encrypted with, or the payload was altered"
            ) from err
        return Payload.FromString(plain)


def data_converter(env: Mapping[str, str] | None = None) -> DataConverter:
    """The pydantic data converter, encrypting when SAGA_CODEC_KEYS is set in `env`
    (default: the process environment). Encrypted, failure messages and stack traces are
    encoded too (`encode_common_attributes`): an error can quote its input."""
    keys = keys_from_env(env)
    if not keys:
        _warn_in_clear()
        return pydantic_data_converter
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=EncryptionCodec(keys),
        failure_converter_class=_EncodedFailureConverter,
    )


@functools.cache
def _warn_in_clear() -> None:
    """Once per process."""
    log.warning("%s is not set: payloads are stored in clear", CODEC_KEYS_ENV)


class _EncodedFailureConverter(DefaultFailureConverter):
    def __init__(self) -> None:
        super().__init__(encode_common_attributes=True)
