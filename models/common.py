"""Field types that more than one business thing uses, and the services' error body."""

import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, Field, GetCoreSchemaHandler, GetJsonSchemaHandler
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
CardNumber = Annotated[str, Matching(r"[0-9]{12,19}", "12 to 19 digits")]
Email = Annotated[
    str, Matching(r"[^@\s]+@[^@\s]+\.[^@\s]+", "an email address like name@example.com")
]
Quantity = Annotated[int, Field(ge=1, le=1000)]
Cents = Annotated[int, Field(ge=1, le=100_000_000, description="Integer minor units.")]


class ServiceError(BaseModel):
    """Body of every 4xx a service answers: what went wrong, and for which field."""

    code: str
    message: str
    field: str | None = None
