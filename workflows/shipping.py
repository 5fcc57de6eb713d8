"""ShipOrder: a job per confirmed order, started by the fan-out as an abandoned child."""

from temporalio import workflow

from workflows.consumers import (
    consume,
    consumer_call,
    job_target,
    redrive_number,
)

with workflow.unsafe.imports_passed_through():
    from activities.warehouse import WarehouseActivities
    from models.consumers import ConsumerResult
    from models.events import OrderConfirmed
    from models.fanout import SHIP_ORDER_WORKFLOW_TYPE, SHIPPING_CONSUMER
    from models.warehouse import shipment_for


@workflow.defn(name=SHIP_ORDER_WORKFLOW_TYPE)
class ShipOrderWorkflow:
    """Ask the warehouse to ship the order (one shipment per order). Gives up after
    CONSUMER_RETRY and leaves a dead letter. A redrive starts it again (memo `redrive`: n)."""

    @workflow.run
    async def run(self, event: OrderConfirmed) -> ConsumerResult:
        return await consume(
            SHIPPING_CONSUMER,
            event,
            job_target(SHIP_ORDER_WORKFLOW_TYPE, event.event_id, SHIPPING_CONSUMER),
            lambda: consumer_call(WarehouseActivities.create_shipment, shipment_for(event)),
            redrive=redrive_number(),
        )
