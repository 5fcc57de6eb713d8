"""Field types that more than one business thing uses, and the services' error body."""

from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints

OrderId = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"),
    Field(description="Letters, digits, '-' and '_', 1-64 characters, starting alphanumeric."),
]
Sku = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Z0-9][A-Z0-9-]{1,31}$"),
    Field(description="Upper-case letters, digits and '-', 2-32 characters."),
]
IdempotencyKey = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9:_-]{0,127}$"),
    Field(description="Stable id of one logical request; a repeat returns the first result."),
]
Currency = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Z]{3}$"),
    Field(description="ISO 4217 code, three upper-case letters."),
]
Quantity = Annotated[int, Field(ge=1, le=1000)]
Cents = Annotated[int, Field(ge=1, le=100_000_000, description="Integer minor units.")]


class ServiceError(BaseModel):
    """Body of every 4xx a service answers: what went wrong, and for which field."""

    code: str
    message: str
    field: str | None = None
