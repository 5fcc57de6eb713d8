"""SendReceipt: a job per confirmed order, started by the fan-out as an abandoned child."""

from temporalio import workflow

from workflows.consumers import (
    consume,
    consumer_call,
    job_target,
    redrive_number,
)

with workflow.unsafe.imports_passed_through():
    from activities.email import EmailActivities
    from models.consumers import ConsumerResult
    from models.email import receipt_for
    from models.events import OrderConfirmed
    from models.fanout import RECEIPT_CONSUMER, SEND_RECEIPT_WORKFLOW_TYPE


@workflow.defn(name=SEND_RECEIPT_WORKFLOW_TYPE)
class SendReceiptWorkflow:
    """Mail the receipt (the email service keeps one mail per event id). Gives up after
    CONSUMER_RETRY and leaves a dead letter. A redrive starts it again (memo `redrive`: n)."""

    @workflow.run
    async def run(self, event: OrderConfirmed) -> ConsumerResult:
        return await consume(
            RECEIPT_CONSUMER,
            event,
            job_target(SEND_RECEIPT_WORKFLOW_TYPE, event.event_id, RECEIPT_CONSUMER),
            lambda: consumer_call(EmailActivities.send_email, receipt_for(event)),
            redrive=redrive_number(),
        )
