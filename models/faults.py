"""Fault injection of the local services (for tests, demos and chaos runs): down, slow,
flaky (a share of 503s) or hanging past the caller's timeout."""

from pydantic import BaseModel, Field


class Faults(BaseModel):
    """Body of `PUT /admin/fault`. `fail`: every business endpoint answers 503;
    `delay_seconds`: each waits this long first; `error_rate`: this share of requests answer
    503 (nothing done); `hang_seconds`: this share (`hang_rate`) of requests are handled, then
    their answer is held this long: past the caller's timeout the work is done but the answer
    is lost. `seed`: makes the draws repeatable. `paths`: only
    requests whose path starts with one of these (say `["/charges/"]` hits refunds but not new
    charges); empty: all. /health and /admin are never affected."""

    fail: bool = False
    delay_seconds: float = Field(default=0.0, ge=0, le=60)
    paths: list[str] = Field(default_factory=list, max_length=20)
    error_rate: float = Field(default=0.0, ge=0, le=1)
    hang_seconds: float = Field(default=0.0, ge=0, le=120)
    hang_rate: float = Field(default=1.0, ge=0, le=1)
    seed: int | None = None


class FaultCounts(BaseModel):
    """`GET /admin/fault/counts`: faults this process injected since it started."""

    requests: int = 0  # business requests seen
    errors: int = 0  # answered 503 (fail or error_rate)
    hangs: int = 0
    delays: int = 0

    @property
    def injected(self) -> int:
        return self.errors + self.hangs + self.delays

    def __add__(self, other: "FaultCounts") -> "FaultCounts":
        return FaultCounts(
            requests=self.requests + other.requests,
            errors=self.errors + other.errors,
            hangs=self.hangs + other.hangs,
            delays=self.delays + other.delays,
        )
