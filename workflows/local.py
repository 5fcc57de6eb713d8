"""Local activities that fail like activities.

A local activity runs in the worker that runs the workflow, inside the workflow task: no
activity task, no second workflow task, and its result is recorded as a marker. The trade-off:
its retries happen in that worker (a worker that dies re-runs it from the start, so the call
must be idempotent, which ours are), and it should be short (seconds, not minutes).
"""

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, FailureError

A = TypeVar("A")
R = TypeVar("R")


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
