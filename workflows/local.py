"""Local activities that fail like activities, and fall back to activities when they keep failing.

A local activity runs in the worker that runs the workflow, inside the workflow task: no
activity task, no second workflow task, and its result is recorded as a marker. The trade-off:
its retries happen in that worker (a worker that dies re-runs it from the start, so the call
must be idempotent, which ours are), it should be short (seconds, not minutes), and while it
runs the workflow task stays open, so the Web UI shows no pending activity and a signal or
update waits for the task to end. `execute_local_first` keeps the fast path and gives back
the visibility where it matters: a call that still fails after a couple of quick local tries
continues as an ordinary activity, with the rest of its retry budget, a pending activity an
operator can see (attempts, last failure) while the workflow is free to take a cancel.
"""

import dataclasses
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    FailureError,
    is_cancelled_exception,
)

A = TypeVar("A")
R = TypeVar("R")

# Tries in the workflow task before the call continues as an activity: the first attempt and
# one quick retry cover a blip; what fails twice is worth seeing in the Web UI.
LOCAL_ATTEMPTS = 2
# Histories recorded before the fallback existed retried a failing local step in the worker
# until its budget ran out; they replay that way.
FALLBACK_PATCH = "local-steps-fall-back-to-activities"


async def execute_local(
    activity: Callable[[Any, A], Awaitable[R]],
    arg: A,
    *,
    start_to_close_timeout: timedelta,
    retry_policy: RetryPolicy,
) -> R:
    """`workflow.execute_local_activity_method`, but a failure is an ActivityError with the
    error as its cause, as for an activity: the SDK raises a failed local activity's error
    bare (ApplicationError, TimeoutError, CancelledError)."""
    try:
        return await workflow.execute_local_activity_method(
            activity,
            arg,
            start_to_close_timeout=start_to_close_timeout,
            retry_policy=retry_policy,
        )
    except FailureError as err:
        if isinstance(err, ActivityError):
            raise
        raise ActivityError(
            "Local activity error",
            scheduled_event_id=0,
            started_event_id=0,
            identity="",
            activity_type=getattr(activity, "__name__", "local_activity"),
            activity_id="",
            retry_state=None,
        ) from err


async def execute_local_first(
    activity: Callable[[Any, A], Awaitable[R]],
    arg: A,
    *,
    start_to_close_timeout: timedelta,
    retry_policy: RetryPolicy,
    local_attempts: int = LOCAL_ATTEMPTS,
) -> R:
    """Up to `local_attempts` tries as a local activity; if the call still fails with an error
    worth retrying and the policy has attempts left, the rest as an ordinary activity whose
    backoff carries on where the local tries stopped. Refusals (non-retryable errors) and
    cancellation are raised at once, as `execute_local` raises them."""
    local_policy = _first_attempts(retry_policy, local_attempts)
    try:
        return await execute_local(
            activity, arg, start_to_close_timeout=start_to_close_timeout, retry_policy=local_policy
        )
    except ActivityError as err:
        if local_policy.maximum_attempts == retry_policy.maximum_attempts or not _retryable(
            err, retry_policy
        ):
            raise
        # Read only on this path: a checkout whose local tries succeed records no marker.
        if not workflow.patched(FALLBACK_PATCH):
            raise
        workflow.logger.info(
            "%s failed %d local attempts (%s); continuing as an activity",
            getattr(activity, "__name__", "activity"),
            local_attempts,
            err.cause,
        )
    return await workflow.execute_activity_method(
        activity,
        arg,
        start_to_close_timeout=start_to_close_timeout,
        retry_policy=remaining_policy(retry_policy, local_attempts),
    )


def _first_attempts(policy: RetryPolicy, attempts: int) -> RetryPolicy:
    limit = attempts if policy.maximum_attempts <= 0 else min(attempts, policy.maximum_attempts)
    return dataclasses.replace(policy, maximum_attempts=limit)


def remaining_policy(policy: RetryPolicy, attempts: int) -> RetryPolicy:
    """The policy's schedule from attempt `attempts + 1` on: what is left of its budget, and
    the backoff it would have waited after that attempt."""
    interval = policy.initial_interval * policy.backoff_coefficient**attempts
    if policy.maximum_interval is not None:
        interval = min(interval, policy.maximum_interval)
    remaining = 0 if policy.maximum_attempts <= 0 else policy.maximum_attempts - attempts
    return dataclasses.replace(policy, maximum_attempts=remaining, initial_interval=interval)


def _retryable(err: ActivityError, policy: RetryPolicy) -> bool:
    if is_cancelled_exception(err):
        return False
    cause = err.cause
    if isinstance(cause, ApplicationError):
        return not cause.non_retryable and cause.type not in (
            policy.non_retryable_error_types or ()
        )
    return True
