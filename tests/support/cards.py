"""Payment tokens for a test: cards tokenized as a shop's front end does (POST /payment-methods
with the publishable key), so checkouts carry tokens, never card numbers."""

import functools
import random

from models.checkout import luhn_ok
from services.auth import publishable_key_from_env
from starter.payment_methods import tokenize_card_sync


@functools.cache
def card_token(payments_url: str, card_number: str) -> str:
    """A token of this card from the payments service at `payments_url`: a test card keeps its
    behaviour through it. One per card and service, reused as a saved card is."""
    return tokenize_card_sync(payments_url, publishable_key_from_env(), card_number).token


def random_card(first_digit: str = "5") -> str:
    """A Luhn-valid 16-digit card number of a test's own (charged like CARD_OK)."""
    digits = first_digit + "".join(random.choice("0123456789") for _ in range(14))
    return next(digits + d for d in "0123456789" if luhn_ok(digits + d))
