"""Fault injection of the local services (for tests, demos and chaos runs): down, or slow."""

from pydantic import BaseModel, Field


class Faults(BaseModel):
    """Body of `PUT /admin/fault`. `fail`: every business endpoint answers 503;
    `delay_seconds`: each waits this long first. `paths`: only requests whose path starts with
    one of these (say `["/charges/"]` hits refunds but not new charges); empty: all.
    /health and /admin are never affected."""

    fail: bool = False
    delay_seconds: float = Field(default=0.0, ge=0, le=60)
    paths: list[str] = Field(default_factory=list, max_length=20)
