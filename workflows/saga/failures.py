"""Reading the failure of an activity (or local activity, or child): one place for the whole
project, so a step, a compensation and a consumer all say the same of the same failure.

Temporal wraps an activity's error in an ActivityError (a local activity's arrives bare);
what the service said is its cause. An activity that puts its attempt number first in its
error's details (activities/http.py does) gets its attempts counted exactly; otherwise a
retryable failure that ended the call is taken to have used the whole retry policy.
"""

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    ChildWorkflowError,
    RetryState,
    is_cancelled_exception,
)

# Data, passed through: the sandbox does not build its class again for every run.
with workflow.unsafe.imports_passed_through():
    from models.failures import MAX_WORDS as MAX_WORDS
    from models.failures import UNAVAILABLE as UNAVAILABLE
    from models.failures import Failure as Failure


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
