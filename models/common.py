"""Field types that more than one business thing uses, and the services' error body."""

import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field, GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema


@dataclass(frozen=True)
class Matching:
    """Annotated marker: the str must match `pattern`; the error says `meaning`, not the regex."""

    pattern: str
    meaning: str

    def _check(self, value: str) -> str:
        if not re.fullmatch(self.pattern, value):
            raise ValueError(f"must be {self.meaning}")
        return value

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self._check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema.update(pattern=f"^{self.pattern}$", description=self.meaning)
        return json_schema


OrderId = Annotated[
    str,
    Matching(
        r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}",
        "1-64 letters, digits, '-' or '_', starting with a letter or digit",
    ),
]
Sku = Annotated[str, Matching(r"[A-Z0-9][A-Z0-9-]{1,31}", "2-32 upper-case letters, digits or '-'")]
IdempotencyKey = Annotated[
    str,
    Matching(
        r"[A-Za-z0-9][A-Za-z0-9:_-]{0,127}",
        "1-128 letters, digits, ':', '-' or '_', starting with a letter or digit",
    ),
]
CustomerId = Annotated[str, Matching(r"[A-Za-z0-9_-]{1,64}", "1-64 letters, digits, '-' or '_'")]
Currency = Annotated[
    str, Matching(r"[A-Z]{3}", "an ISO 4217 code of three upper-case letters (like EUR)")
]


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def card_digits(text: str) -> str | None:
    """The digits of `text` if it is written like a card number (12 to 19 ASCII digits, with
    spaces or dashes between groups allowed) and passes the Luhn check; else None."""
    digits = re.sub(r"[ -]", "", text)
    if re.fullmatch(r"[0-9]{12,19}", digits) and luhn_ok(digits):
        return digits
    return None


def _card_number(value: str) -> str:
    digits = re.sub(r"[ -]", "", value)
    # ASCII digits only: str.isdigit() also takes other scripts' digits.
    if not re.fullmatch(r"[0-9]{12,19}", digits):
        raise ValueError("must be 12 to 19 digits")
    if not luhn_ok(digits):
        raise ValueError("fails the Luhn check (mistyped card number?)")
    return digits


# A card number as typed (spaces or dashes allowed), normalised to its digits. Errors never
# quote the input. Only the payments service's POST /payment-methods ever takes one.
CardNumber = Annotated[
    str,
    # The pattern is for the docs and generated clients; the validator says what is wrong.
    Field(max_length=40, json_schema_extra={"pattern": "^[0-9][0-9 -]{10,37}[0-9]$"}),
    AfterValidator(_card_number),
]

PAYMENT_TOKEN_PATTERN = r"pm_[A-Za-z0-9_-]{16,64}"


def _payment_token(value: str) -> str:
    if card_digits(value) is not None:
        raise ValueError(
            "looks like a card number: a card must be tokenized first (the payments "
            "service's POST /payment-methods), then the token it returns sent here"
        )
    if not re.fullmatch(PAYMENT_TOKEN_PATTERN, value):
        raise ValueError("must be a payment token from the payments service, like pm_...")
    return value


# What stands for a card once the payments service tokenized it (`pm_...`): the workflow,
# its history and the charges carry this, never the number.
PaymentToken = Annotated[
    str,
    Field(
        max_length=80,
        description="a payment token (pm_...) from POST /payment-methods",
        json_schema_extra={"pattern": f"^{PAYMENT_TOKEN_PATTERN}$"},
    ),
    AfterValidator(_payment_token),
]
Email = Annotated[
    str, Matching(r"[^@\s]+@[^@\s]+\.[^@\s]+", "an email address like name@example.com")
]
Quantity = Annotated[int, Field(ge=1, le=1000)]
Cents = Annotated[int, Field(ge=1, le=100_000_000, description="Integer minor units.")]

# How many records a service's list endpoint answers (its `limit`): unless asked, and at most.
DEFAULT_LIST_LIMIT = 500
MAX_LIST_LIMIT = 10_000
# How many orders a list endpoint's repeated `order_id` names at most: the URL stays well
# under what a server takes, with 64-character ids.
MAX_ORDER_IDS = 100


class ServiceError(BaseModel):
    """Body of every 4xx a service answers: what went wrong, and for which field."""

    code: str
    message: str
    field: str | None = None
