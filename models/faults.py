"""Fault injection of the fan-out's local services (for tests and demos): down, or slow."""

from pydantic import BaseModel, Field


class Faults(BaseModel):
    """Body of `PUT /admin/fault`. `fail`: every business endpoint answers 503;
    `delay_seconds`: each waits this long first. /health and /admin are never affected."""

    fail: bool = False
    delay_seconds: float = Field(default=0.0, ge=0, le=60)
