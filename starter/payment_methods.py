"""What a shop's front end does with a card: hand the number to the payments service
(POST /payment-methods, with the publishable key) and keep only the token it answers.

The CLI, the demo, `run`, the bench and chaos tokenize here before they start a checkout, so
the number never reaches Temporal: the checkout carries the token.
"""

from dataclasses import dataclass

import httpx
from pydantic import ValidationError

from models.common import ServiceError
from models.payments import (
    CARD_DECLINED,
    CARD_FLAKY,
    CARD_OK,
    PAYMENT_METHODS_PATH,
    NewPaymentMethod,
    PaymentMethod,
)
from services.auth import publishable_key_headers
from worker.settings import Settings

TOKENIZE_TIMEOUT_SECONDS = 10.0


class TokenizeRefused(Exception):
    """The payments service refused the card (a 4xx): its error, which names the field."""

    def __init__(self, error: ServiceError) -> None:
        super().__init__(f"{error.field or 'card'}: {error.message} ({error.code})")
        self.error = error


class PublishableKeyMissing(RuntimeError):
    pass


def publishable_key(settings: Settings) -> str:
    """CHECKOUT_PAYMENTS_PUBLISHABLE_KEY, which the CLI needs to tokenize a card."""
    if settings.payments_publishable_key is None:
        raise PublishableKeyMissing(
            "CHECKOUT_PAYMENTS_PUBLISHABLE_KEY is not set: the payments service tokenizes "
            "cards only for callers that send it (a stack's stack.env exports it)"
        )
    return settings.payments_publishable_key.get_secret_value()


def _request(card_number: str) -> bytes:
    # Validated here first: a card the service would refuse is not sent at all.
    return NewPaymentMethod(card_number=card_number).model_dump_json().encode()


def _answer(response: httpx.Response) -> PaymentMethod:
    if 400 <= response.status_code < 500:
        try:
            error = ServiceError.model_validate_json(response.content)
        except ValidationError:
            error = ServiceError(code=f"http_{response.status_code}", message="refused")
        raise TokenizeRefused(error)
    response.raise_for_status()
    return PaymentMethod.model_validate_json(response.content)


async def tokenize_card(payments_url: str, key: str, card_number: str) -> PaymentMethod:
    """The card's token (and brand, last four) from the payments service at `payments_url`.

    Raises pydantic's ValidationError for a card that is no card (checked before sending),
    TokenizeRefused for a refusal, httpx.HTTPError when the service cannot be reached."""
    body = _request(card_number)
    headers = {"Content-Type": "application/json", **publishable_key_headers(key)}
    async with httpx.AsyncClient(timeout=TOKENIZE_TIMEOUT_SECONDS) as http:
        url = payments_url.rstrip("/") + PAYMENT_METHODS_PATH
        return _answer(await http.post(url, content=body, headers=headers))


def tokenize_card_sync(payments_url: str, key: str, card_number: str) -> PaymentMethod:
    """`tokenize_card` for synchronous callers (tests' helpers)."""
    body = _request(card_number)
    headers = {"Content-Type": "application/json", **publishable_key_headers(key)}
    url = payments_url.rstrip("/") + PAYMENT_METHODS_PATH
    return _answer(httpx.post(url, content=body, headers=headers, timeout=TOKENIZE_TIMEOUT_SECONDS))


@dataclass(frozen=True)
class CardTokens:
    """One token per test card (models.payments): each keeps its card's behaviour."""

    ok: str
    declined: str
    flaky: str


async def tokenize_test_cards(payments_url: str, key: str) -> CardTokens:
    """Tokenize each test card once; checkouts reuse the tokens, as a saved card is."""
    ok, declined, flaky = [
        (await tokenize_card(payments_url, key, card)).token
        for card in (CARD_OK, CARD_DECLINED, CARD_FLAKY)
    ]
    return CardTokens(ok=ok, declined=declined, flaky=flaky)
