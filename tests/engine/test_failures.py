"""One reader of activity failures (engine/temporal_saga/failures.py): what failed, whether a retry
could help, the words for a person, and the attempts actually made, for an activity's error
(wrapped in an ActivityError) and a local activity's (bare) alike."""

from datetime import timedelta

import pytest
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    RetryState,
    TimeoutError,
    TimeoutType,
)

from temporal_saga.failures import UNAVAILABLE, read_failure
from workflows.fanout import CONSUMER_RETRY, SIGNAL_RETRY, describe_failure

POLICY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=5)


def activity_error(cause: BaseException, retry_state: RetryState | None) -> ActivityError:
    error = ActivityError(
        "Activity task failed",
        scheduled_event_id=5,
        started_event_id=6,
        identity="worker",
        activity_type="charge_payment",
        activity_id="3",
        retry_state=retry_state,
    )
    error.__cause__ = cause
    return error


def test_a_refusal_is_its_own_code_and_words_not_retryable() -> None:
    refusal = ApplicationError("the card was declined", type="card_declined", non_retryable=True)
    failure = read_failure(activity_error(refusal, RetryState.NON_RETRYABLE_FAILURE), POLICY)
    assert (failure.code, failure.retryable, failure.cancelled) == ("card_declined", False, False)
    assert failure.reason == ("card_declined", "the card was declined")
    assert failure.words == "card_declined: the card was declined"


def test_a_transient_fault_that_outlasted_its_retries_is_unavailable() -> None:
    fault = ApplicationError("POST /charges answered 503", 8, type="service_unavailable")
    failure = read_failure(activity_error(fault, RetryState.MAXIMUM_ATTEMPTS_REACHED), POLICY)
    assert failure.reason == (UNAVAILABLE, "POST /charges answered 503")
    # The attempt the activity put first in its details: exact.
    assert failure.attempts == 8


def test_attempts_without_details_come_from_the_retry_state_and_policy() -> None:
    fault = ApplicationError("timeout", type="service_unavailable")
    exhausted = read_failure(activity_error(fault, RetryState.MAXIMUM_ATTEMPTS_REACHED), POLICY)
    assert exhausted.attempts == 5
    stopped = read_failure(activity_error(fault, RetryState.CANCEL_REQUESTED), POLICY)
    assert stopped.attempts is None


@pytest.mark.parametrize("policy", [SIGNAL_RETRY, CONSUMER_RETRY], ids=["signal", "consumer"])
def test_a_failed_local_activity_arrives_bare_and_counts_every_attempt(
    policy: RetryPolicy,
) -> None:
    """A local activity's error is not wrapped: a retryable one that ended the call used the
    whole policy (the fan-out's signal-with-start wrote 1 attempt where 5 were made)."""
    bare = ApplicationError("connection refused", type="RPCError")
    error, attempts = describe_failure(bare, policy)
    assert attempts == policy.maximum_attempts == 5
    assert error == "RPCError: connection refused"


def test_a_bare_refusal_counts_the_attempt_it_names() -> None:
    refusal = ApplicationError("no such target", 2, type="invalid_target", non_retryable=True)
    assert describe_failure(refusal, SIGNAL_RETRY)[1] == 2
    assert describe_failure(ApplicationError("no", non_retryable=True), SIGNAL_RETRY)[1] == 1


def test_cancellation_and_timeouts() -> None:
    cancelled = read_failure(activity_error(CancelledError("cancelled"), None), POLICY)
    assert cancelled.cancelled and not cancelled.retryable
    timed_out = read_failure(
        activity_error(
            TimeoutError(
                "start-to-close", type=TimeoutType.START_TO_CLOSE, last_heartbeat_details=[]
            ),
            RetryState.TIMEOUT,
        ),
        POLICY,
    )
    assert timed_out.retryable and timed_out.reason[0] == UNAVAILABLE
