"""Reading the failure of an activity (or local activity, or child): one place for the whole
project, so a step, a compensation and a consumer all say the same of the same failure.

Temporal wraps an activity's error in an ActivityError (a local activity's arrives bare);
what the service said is its cause. An activity that puts its attempt number first in its
error's details (activities/http.py does) gets its attempts counted exactly; otherwise a
retryable failure that ended the call is taken to have used the whole retry policy.
"""

from dataclasses import dataclass

from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    ChildWorkflowError,
    RetryState,
    is_cancelled_exception,
)

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


def read_failure(err: BaseException, policy: RetryPolicy | None = None) -> Failure:
    """What failed and why. `policy`: the call's retry policy, for its attempt count."""
    cause: BaseException = err
    if isinstance(err, ActivityError | ChildWorkflowError) and err.cause is not None:
        cause = err.cause
    cancelled = is_cancelled_exception(err)
    if isinstance(cause, ApplicationError):
        code = cause.type or "error"
        retryable = not cause.non_retryable and not (
            policy is not None and code in (policy.non_retryable_error_types or ())
        )
        failure = Failure(code, cause.message, retryable, cancelled, attempt_in(cause.details))
    else:
        failure = Failure(type(cause).__name__, str(cause), not cancelled, cancelled, None)
    if failure.attempts is None:
        failure = _with_attempts(failure, err, policy)
    return failure


def attempt_in(details: object) -> int | None:
    """The attempt number an activity put first in its error's details, if any."""
    if isinstance(details, list | tuple) and details and type(details[0]) is int:
        return details[0]
    return None


def _with_attempts(failure: Failure, err: BaseException, policy: RetryPolicy | None) -> Failure:
    exhausted = (
        err.retry_state == RetryState.MAXIMUM_ATTEMPTS_REACHED
        if isinstance(err, ActivityError)
        # A local activity gives up on a retryable error only once its attempts are spent.
        else failure.retryable and not failure.cancelled
    )
    if not exhausted or policy is None or policy.maximum_attempts <= 0:
        return failure
    return Failure(
        failure.code, failure.message, failure.retryable, failure.cancelled, policy.maximum_attempts
    )
