"""The jobs of a confirmed order: SendReceipt and ShipOrder, child workflows the fan-out
starts and abandons (workflows/fanout.py), one per event. Both have the one shape `run_job`
gives: a call to the consumer's service with its budget (CONSUMER_RETRY), then a dead letter
instead of a failure; a redrive starts the job again (memo `redrive`: n)."""

from temporalio import workflow

from workflows.fanout import run_job

with workflow.unsafe.imports_passed_through():
    from activities.email import EmailActivities
    from activities.warehouse import WarehouseActivities
    from models.consumers import ConsumerResult
    from models.email import receipt_for
    from models.events import OrderConfirmed
    from models.fanout import (
        RECEIPT_CONSUMER,
        SEND_RECEIPT_WORKFLOW_TYPE,
        SHIP_ORDER_WORKFLOW_TYPE,
        SHIPPING_CONSUMER,
    )
    from models.warehouse import shipment_for


@workflow.defn(name=SEND_RECEIPT_WORKFLOW_TYPE)
class SendReceiptWorkflow:
    """Mail the receipt (the email service keeps one mail per event id)."""

    @workflow.run
    async def run(self, event: OrderConfirmed) -> ConsumerResult:
        return await run_job(
            RECEIPT_CONSUMER, event, EmailActivities.send_email, receipt_for(event)
        )


@workflow.defn(name=SHIP_ORDER_WORKFLOW_TYPE)
class ShipOrderWorkflow:
    """Ask the warehouse to ship the order (one shipment per order)."""

    @workflow.run
    async def run(self, event: OrderConfirmed) -> ConsumerResult:
        return await run_job(
            SHIPPING_CONSUMER, event, WarehouseActivities.create_shipment, shipment_for(event)
        )
