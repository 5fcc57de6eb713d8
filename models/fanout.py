"""Who reacts to an order's events: each consumer's name, its workflow type, its workflow ids.

Three names, three concepts: the workflow type, the consumer (dead letters, metrics), and
the workflow ids. Here, not beside the consumers' workflows, so that the checkout's fan-out
(workflows/fanout.py) names them without importing those workflows: the sandbox imports a
workflow's modules anew for every run.
"""

import zlib
from dataclasses import dataclass
from typing import Final

# Jobs: one child workflow per event and consumer.
SEND_RECEIPT_WORKFLOW_TYPE: Final = "SendReceipt"
RECEIPT_CONSUMER: Final = "receipt"
SHIP_ORDER_WORKFLOW_TYPE: Final = "ShipOrder"
SHIPPING_CONSUMER: Final = "shipping"

# Long-lived reactions: one workflow per customer, one per analytics shard.
CUSTOMER_LOYALTY_WORKFLOW_TYPE: Final = "CustomerLoyalty"
LOYALTY_CONSUMER: Final = "loyalty"
ANALYTICS_WORKFLOW_TYPE: Final = "Analytics"
ANALYTICS_CONSUMER: Final = "analytics"
ANALYTICS_WORKFLOW_ID_PREFIX: Final = "analytics"
# How many shards. Workflow code reads it (the checkout's fan-out), so it is code, not an
# environment setting: every worker of one build agrees on it. Changing it is a deploy; an
# event announced after the deploy goes to its order's shard under the new N, running
# checkouts still replay (see docs/performance.md, "Scale-out limits").
ANALYTICS_SHARDS: Final = 8


def loyalty_workflow_id(customer_id: str) -> str:
    return f"loyalty-{customer_id}"


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


@dataclass(frozen=True)
class Job:
    """A child workflow per event: `workflow` (its type) gets the event as its one input."""

    consumer: str
    workflow: str


@dataclass(frozen=True)
class Reaction:
    """A signal (with start) to a long-lived workflow; its input is the event."""

    consumer: str
    workflow: str
    workflow_id: str
    signal: str
