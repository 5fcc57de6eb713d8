"""Analytics: long-lived workflows counting confirmed and rejected orders, sharded by order.

`ANALYTICS_SHARDS` workflows `analytics-0` ... `analytics-{N-1}`; an order's events go to
shard `crc32(order_id) % N` (`analytics_workflow_id`), so one order's confirmed and rejected
events meet in one shard. One workflow would cap the shop at what one workflow takes (one
workflow task at a time, one history); N workflows take about N times that.

Signals `order_confirmed` / `order_rejected` (sent with signal-with-start by the fan-out)
record the event in the analytics service, once per event id. Continues as new after
`continue_after` signals (or when Temporal suggests it), carrying the last handled ids.
Counts per shard are the shard's; the shop's counts are the service's (`GET /counts`), which
dedupes by event id across shards.
"""

from temporalio import workflow

from workflows.fanout import LongLivedConsumer, consumer_call

with workflow.unsafe.imports_passed_through():
    from activities.analytics import AnalyticsActivities
    from models.analytics import record_for
    from models.consumers import AnalyticsState
    from models.events import (
        ORDER_CONFIRMED_SIGNAL,
        ORDER_REJECTED_SIGNAL,
        OrderConfirmed,
        OrderEvent,
        OrderRejected,
    )
    from models.fanout import ANALYTICS_CONSUMER, ANALYTICS_WORKFLOW_TYPE


@workflow.defn(name=ANALYTICS_WORKFLOW_TYPE)
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

    async def _record(self, event: OrderEvent, signal: str) -> None:
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
