"""Analytics: one long-lived workflow (`analytics`) counting confirmed and rejected orders.

Signals `order_confirmed` / `order_rejected` (sent with signal-with-start by the fan-out)
record the event in the analytics service, once per event id. Continues as new after
`continue_after` signals (or when Temporal suggests it), carrying the last handled ids.
"""

from temporalio import workflow

from workflows.consumers import Event, LongLivedConsumer, consumer_call

with workflow.unsafe.imports_passed_through():
    from activities.analytics import AnalyticsActivities
    from models.analytics import record_for
    from models.consumers import AnalyticsState
    from models.events import OrderConfirmed, OrderRejected

ANALYTICS = "Analytics"
ANALYTICS_CONSUMER = "analytics"
ANALYTICS_WORKFLOW_ID = "analytics"
ORDER_CONFIRMED_SIGNAL = "order_confirmed"
ORDER_REJECTED_SIGNAL = "order_rejected"


@workflow.defn(name=ANALYTICS)
class AnalyticsWorkflow:
    @workflow.init
    def __init__(self, state: AnalyticsState | None = None) -> None:
        self._consumer = LongLivedConsumer(state or AnalyticsState())

    @workflow.run
    async def run(self, state: AnalyticsState | None = None) -> None:
        workflow.continue_as_new(await self._consumer.run_until_due())

    @workflow.signal(name=ORDER_CONFIRMED_SIGNAL)
    async def order_confirmed(self, event: OrderConfirmed) -> None:
        await self._record(event, ORDER_CONFIRMED_SIGNAL)

    @workflow.signal(name=ORDER_REJECTED_SIGNAL)
    async def order_rejected(self, event: OrderRejected) -> None:
        await self._record(event, ORDER_REJECTED_SIGNAL)

    async def _record(self, event: Event, signal: str) -> None:
        applied = await self._consumer.handle(
            ANALYTICS_CONSUMER,
            event,
            signal,
            lambda: consumer_call(AnalyticsActivities.record_order_event, record_for(event)),
        )
        if applied:
            counts = self._consumer.state.counts
            counts[event.type] = counts.get(event.type, 0) + 1

    @workflow.query(name="state")
    def state(self) -> AnalyticsState:
        return self._consumer.snapshot()
