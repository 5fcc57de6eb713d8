"""What failed and why, as the saga engine reads a failed call (workflows/saga/failures.py):
plain data, so the workflow sandbox passes it through instead of building it for every run."""

from dataclasses import dataclass

# The code of a failure that outlasted its retries: 5xx, timeouts, unreachable services.
UNAVAILABLE = "service_unavailable"
MAX_WORDS = 2000


@dataclass(frozen=True)
class Failure:
    # The business error's type (out_of_stock, card_declined, ...), or the exception's name.
    code: str
    # What the service (or the exception) said.
    message: str
    # A refusal is not retryable: retrying cannot change the answer.
    retryable: bool
    cancelled: bool
    # Attempts made, when known.
    attempts: int | None

    @property
    def words(self) -> str:
        """`code: message`, bounded: for logs, dead letters and the status query."""
        return f"{self.code}: {self.message}"[:MAX_WORDS]

    @property
    def reason(self) -> tuple[str, str]:
        """The code and words a saga answers with: a refusal's own, else `UNAVAILABLE`."""
        if self.retryable or self.cancelled:
            return UNAVAILABLE, self.message
        return self.code, self.message


@dataclass(frozen=True)
class SagaFailure:
    """Why a saga is compensating: the step that failed (or was running), code and words."""

    step: str | None
    code: str
    detail: str

    @property
    def summary(self) -> str:
        """`charge_payment failed: card_declined`: for the records the undo leaves."""
        return f"{self.step or 'saga'} failed: {self.code}"
