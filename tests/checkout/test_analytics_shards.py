"""Analytics shards: an order's shard is stable (crc32, never the salted `hash()`), the orders
spread evenly over the shards, and one order's events share a shard. No server: the fan-out
end to end is in test_fanout.py."""

import uuid
import zlib
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from models.checkout import checkout_workflow_id
from models.events import (
    ORDER_CONFIRMED_SIGNAL,
    ORDER_REJECTED_SIGNAL,
    OrderConfirmed,
    OrderRejected,
    RejectedLine,
    event_id,
)
from models.fanout import (
    ANALYTICS_CONSUMER,
    ANALYTICS_SHARDS,
    ANALYTICS_WORKFLOW_TYPE,
    analytics_shard,
    analytics_workflow_id,
    analytics_workflow_ids,
)
from models.orders import OrderLine
from workflows.fanout import analytics_reaction

# Computed once with zlib.crc32 of the UTF-8 order id, modulo 8: a change of the hash (or of
# its input) moves orders to other shards, which running shards would feel; it must fail here.
KNOWN = [("o-1001", 2471869188, 4), ("history-1", 1940228194, 2), ("order-42", 1475806942, 6)]


@pytest.mark.parametrize(("order_id", "crc", "shard"), KNOWN)
def test_shard_of_a_known_order_id_is_fixed(order_id: str, crc: int, shard: int) -> None:
    assert zlib.crc32(order_id.encode("utf-8")) == crc
    assert analytics_shard(order_id, 8) == shard
    assert analytics_workflow_id(order_id, 8) == f"analytics-{shard}"


@pytest.mark.parametrize(("order_id", "crc", "shard"), KNOWN)
def test_the_default_is_crc32_modulo_the_builds_shard_count(
    order_id: str, crc: int, shard: int
) -> None:
    assert analytics_workflow_id(order_id) == f"analytics-{crc % ANALYTICS_SHARDS}"


def test_every_shard_id_is_listed_once() -> None:
    ids = analytics_workflow_ids()
    assert ids == [f"analytics-{n}" for n in range(ANALYTICS_SHARDS)]
    every = {analytics_workflow_id(f"order-{i}") for i in range(1000)}
    assert every == set(ids)


@pytest.mark.parametrize(
    "make_id",
    [lambda i: f"order-{i}", lambda i: uuid.uuid5(uuid.NAMESPACE_URL, str(i)).hex[:10]],
    ids=["sequential", "uuid-like"],
)
def test_orders_spread_evenly_over_the_shards(make_id: Callable[[int], str]) -> None:
    orders = 10_000
    per_shard = Counter(analytics_shard(make_id(i)) for i in range(orders))
    mean = orders / ANALYTICS_SHARDS
    assert set(per_shard) == set(range(ANALYTICS_SHARDS))
    # Loose: within 15 % of an even share (the ids are fixed, so this never flakes).
    assert all(abs(n - mean) < 0.15 * mean for n in per_shard.values()), per_shard


def test_confirmed_and_rejected_events_of_one_order_share_a_shard() -> None:
    order_id = "o-shared-7"
    checkout = checkout_workflow_id(order_id)
    common = {
        "order_id": order_id,
        "customer_id": "c-1",
        "email": "a@example.com",
        "total_cents": 1000,
        "currency": "EUR",
        "occurred_at": datetime.now(UTC),
    }
    confirmed = OrderConfirmed(
        event_id=event_id(checkout, "OrderConfirmed"),
        lines=[OrderLine(sku="MUG-BLUE", quantity=1, unit_price_cents=1000)],
        **common,
    )
    rejected = OrderRejected(
        event_id=event_id(checkout, "OrderRejected"),
        lines=[RejectedLine(sku="MUG-BLUE", quantity=1, unit_price_cents=1000)],
        reason="declined",
        reason_code="card_declined",
        failed_step="charge_payment",
        **common,
    )
    to_confirmed = analytics_reaction(confirmed, ORDER_CONFIRMED_SIGNAL)
    to_rejected = analytics_reaction(rejected, ORDER_REJECTED_SIGNAL)

    # The shard follows the order, not the event: its id or its type change nothing.
    assert to_confirmed.workflow_id == to_rejected.workflow_id == analytics_workflow_id(order_id)
    assert (to_confirmed.consumer, to_confirmed.workflow) == (
        ANALYTICS_CONSUMER,
        ANALYTICS_WORKFLOW_TYPE,
    )
    assert (to_confirmed.signal, to_rejected.signal) == ("order_confirmed", "order_rejected")
