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

import zlib
from typing import Final

from temporalio import workflow

from workflows.consumers import LongLivedConsumer, consumer_call

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

# Three names, three concepts: the workflow type, the consumer (dead letters, metrics), and
# the prefix of the shards' workflow ids.
ANALYTICS_WORKFLOW_TYPE: Final = "Analytics"
ANALYTICS_CONSUMER: Final = "analytics"
ANALYTICS_WORKFLOW_ID_PREFIX: Final = "analytics"
# How many shards. Workflow code reads it (the checkout's fan-out), so it is code, not an
# environment setting: every worker of one build agrees on it. Changing it is a deploy; an
# event announced after the deploy goes to its order's shard under the new N, running
# checkouts still replay (see docs/performance.md, "Scale-out limits").
ANALYTICS_SHARDS: Final = 8


def analytics_shard(order_id: str, shards: int = ANALYTICS_SHARDS) -> int:
    """The order's shard: crc32 of its id, the same in every process and on every replay
    (Python's `hash()` of a str is salted per process)."""
    return zlib.crc32(order_id.encode("utf-8")) % shards


def analytics_shard_workflow_id(shard: int) -> str:
    return f"{ANALYTICS_WORKFLOW_ID_PREFIX}-{shard}"


def analytics_workflow_id(order_id: str, shards: int = ANALYTICS_SHARDS) -> str:
    """The id of the Analytics workflow that counts this order: `analytics-{shard}`."""
    return analytics_shard_workflow_id(analytics_shard(order_id, shards))


def analytics_workflow_ids(shards: int = ANALYTICS_SHARDS) -> list[str]:
    """Every shard's workflow id (of another count with `shards`: e.g. the shards a smaller
    count leaves idle, to find and retire them)."""
    return [analytics_shard_workflow_id(shard) for shard in range(shards)]


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
