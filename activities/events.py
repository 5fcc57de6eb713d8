"""Delivering an event to a long-lived workflow: signal-with-start through the client.

From a workflow, signal-with-start needs an activity that holds a Temporal client (the native
`workflow.signal_with_start_workflow` is experimental and needs a server flag). The same
function serves the dead-letter redrive, which calls it from the CLI.
"""

from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from models.deadletters import ConsumerKind, Delivery
from models.events import AFTER_ANSWER


async def signal_with_start(client: Client, delivery: Delivery) -> str:
    """Signal the target workflow, starting it first (with no input) when it isn't running.

    Returns the run id that got the signal. The target dedupes by event id, so delivering the
    same event twice is harmless.
    """
    target = delivery.target
    if target.kind is not ConsumerKind.SIGNAL or not target.signal:
        raise ValueError(f"{target.workflow_id}: not a signal target")
    handle = await client.start_workflow(
        target.workflow_type,
        id=target.workflow_id,
        task_queue=target.task_queue,
        start_signal=target.signal,
        start_signal_args=[delivery.event],
        priority=AFTER_ANSWER,  # when it starts the target: its tasks, whoever signals it
    )
    return handle.result_run_id or ""


class EventActivities:
    def __init__(self, client: Client) -> None:
        self._client = client

    @activity.defn(name="deliver_order_event")
    async def deliver_order_event(self, delivery: Delivery) -> str:
        try:
            return await signal_with_start(self._client, delivery)
        except ValueError as err:
            raise ApplicationError(str(err), type="invalid_target", non_retryable=True) from err
