"""Local activities that fall back to activities when they keep failing.

A local activity runs in the worker that runs the workflow, inside the workflow task: no
activity task, no second workflow task, and its result is recorded as a marker. The trade-off:
its retries happen in that worker (a worker that dies re-runs it from the start, so the call
must be idempotent), it should be short (seconds, not minutes), and while it runs the
workflow task stays open, so the Web UI shows no pending activity and a signal or update waits
for the task to end. `execute_local_first` keeps the fast path and gives back the visibility
where it matters: a call that still fails after a couple of quick local tries continues as an
ordinary activity, with the rest of its retry budget, a pending activity an operator can see
(attempts, last failure) while the workflow is free to take a cancel.
"""

import dataclasses
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import Priority, RetryPolicy
from temporalio.exceptions import FailureError

from temporal_saga.failures import read_failure

R = TypeVar("R")

# Tries in the workflow task before the call continues as an activity: the first attempt and
# one quick retry cover a blip; what fails twice is worth seeing in the Web UI.
LOCAL_ATTEMPTS = 2


async def execute_local_first(
    activity: Callable[..., Awaitable[R]],
    arg: object,
    *,
    start_to_close_timeout: timedelta,
    retry_policy: RetryPolicy,
    heartbeat_timeout: timedelta | None = None,
    task_queue: str | None = None,
    priority: Priority = Priority.default,
    local_attempts: int = LOCAL_ATTEMPTS,
    summary: str | None = None,
) -> R:
    """Up to `local_attempts` tries as a local activity; if the call still fails with an error
    worth retrying and the policy has attempts left, the rest as an ordinary activity whose
    backoff carries on where the local tries stopped. Refusals (non-retryable errors) and
    cancellation are raised at once, as the local activity raised them. The heartbeat
    timeout, task queue and priority are the activity's (a local activity runs here, now)."""
    local_policy = first_attempts(retry_policy, local_attempts)
    call: Any = activity
    try:
        result: R = await workflow.execute_local_activity(
            call,
            arg,
            start_to_close_timeout=start_to_close_timeout,
            retry_policy=local_policy,
            summary=summary,
        )
        return result
    except FailureError as err:
        failure = read_failure(err, local_policy)
        if not failure.retryable or local_policy.maximum_attempts == retry_policy.maximum_attempts:
            raise
        workflow.logger.info(
            "%s failed %d local attempts (%s); continuing as an activity",
            getattr(activity, "__name__", "activity"),
            local_attempts,
            failure.words,
        )
    result = await workflow.execute_activity(
        call,
        arg,
        start_to_close_timeout=start_to_close_timeout,
        retry_policy=remaining_policy(retry_policy, local_attempts),
        heartbeat_timeout=heartbeat_timeout,
        task_queue=task_queue,
        priority=priority,
        summary=summary,
    )
    return result


def first_attempts(policy: RetryPolicy, attempts: int) -> RetryPolicy:
    """The policy, cut to its first `attempts` attempts."""
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
