"""CustomerLoyalty: one long-lived workflow per customer (`loyalty-{customer_id}`).

Signal `order_confirmed` (sent with signal-with-start by the fan-out) books the order's points
in the loyalty service, once per event id. Continues as new after `continue_after` signals (or
when Temporal suggests it), carrying the ids of the last handled events.
"""

from temporalio import workflow

from workflows.fanout import LongLivedConsumer, consumer_call

with workflow.unsafe.imports_passed_through():
    from activities.loyalty import LoyaltyActivities
    from models.consumers import LoyaltyState
    from models.events import ORDER_CONFIRMED_SIGNAL, OrderConfirmed
    from models.fanout import CUSTOMER_LOYALTY_WORKFLOW_TYPE, LOYALTY_CONSUMER
    from models.loyalty import points_entry_for


@workflow.defn(name=CUSTOMER_LOYALTY_WORKFLOW_TYPE)
class CustomerLoyaltyWorkflow:
    @workflow.init
    def __init__(self, state: LoyaltyState | None = None) -> None:
        # Signals can arrive before run() starts (signal-with-start): the state is set here.
        self._consumer = LongLivedConsumer(state or LoyaltyState())

    @workflow.run
    async def run(self, state: LoyaltyState | None = None) -> None:
        workflow.continue_as_new(await self._consumer.run_until_due())

    @workflow.signal(name=ORDER_CONFIRMED_SIGNAL)
    async def order_confirmed(self, event: OrderConfirmed) -> None:
        entry = points_entry_for(event)
        applied = await self._consumer.handle(
            LOYALTY_CONSUMER,
            event,
            ORDER_CONFIRMED_SIGNAL,
            lambda: consumer_call(LoyaltyActivities.add_loyalty_points, entry),
        )
        if applied:
            self._consumer.state.points_awarded += entry.points

    @workflow.query(name="state")
    def state(self) -> LoyaltyState:
        return self._consumer.snapshot()
