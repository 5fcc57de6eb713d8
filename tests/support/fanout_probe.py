"""Test workflows that announce events of their own making.

- `FanoutProbe` / `FanoutProbeRejected`: a small workflow whose whole job is to announce the
  event it is given, and return what the announcement did; `FanoutProbeBroken` announces to a
  target that cannot be signalled.
"""

from temporalio import workflow

from models.fanout import Reaction
from workflows.fanout import announce, announce_order_confirmed, announce_order_rejected

with workflow.unsafe.imports_passed_through():
    from models.consumers import Announcement
    from models.events import OrderConfirmed, OrderRejected


@workflow.defn(name="FanoutProbe")
class FanoutProbe:
    @workflow.run
    async def run(self, event: OrderConfirmed) -> Announcement:
        return await announce_order_confirmed(event)


@workflow.defn(name="FanoutProbeRejected")
class FanoutProbeRejected:
    @workflow.run
    async def run(self, event: OrderRejected) -> Announcement:
        return await announce_order_rejected(event)


@workflow.defn(name="FanoutProbeBroken")
class FanoutProbeBroken:
    """Announces to a reaction that cannot be delivered (no signal name): the announcement
    must still return, report it failed and leave a dead letter."""

    @workflow.run
    async def run(self, event: OrderConfirmed) -> Announcement:
        return await announce(
            event, signals=[Reaction("broken", "CustomerLoyalty", "loyalty-broken", signal="")]
        )


PROBE_WORKFLOWS: list[type] = [
    FanoutProbe,
    FanoutProbeRejected,
    FanoutProbeBroken,
]
