"""`checkout-saga attention list|retry|skip` end to end: dev server, real services, the CLI.

Refunds fail (an injected fault on the payments service, limited to refunds), so a declined
checkout's refund gets stuck and the checkout waits in NEEDS_ATTENTION, listed by its search
attribute. An operator retries one (after the fault is gone) and skips the other.
"""

import asyncio
import json

import httpx
import pytest
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from models.checkout import (
    CheckoutResult,
    checkout_workflow_id,
)
from services.auth import headers_from_env
from temporal_saga.models import Outcome
from temporal_saga.reconcile import NEEDS_ATTENTION_QUERY
from tests.support.cli import run_cli
from tests.support.stuck_refund import declined_request
from worker.settings import Settings
from workflows.checkout import CheckoutWorkflow

pytestmark = pytest.mark.usefixtures("checkout_worker")


async def listed_stuck(env: WorkflowEnvironment, ids: list[str]) -> None:
    query = f"{NEEDS_ATTENTION_QUERY} AND WorkflowId IN ({', '.join(repr(i) for i in ids)})"
    for _ in range(120):  # 30 s at most
        if (await env.client.count_workflows(query)).count == len(ids):
            return
        await asyncio.sleep(0.25)
    raise AssertionError(f"not all of {ids} listed as NEEDS_ATTENTION")


async def test_operator_lists_retries_and_skips_stuck_refunds(
    dev_env: WorkflowEnvironment,
    checkout_settings: Settings,
    services: dict[str, str],
    refunds_down: str,
) -> None:
    requests = [declined_request(services, "attention"), declined_request(services, "attention")]
    handles: list[WorkflowHandle[CheckoutWorkflow, CheckoutResult]] = [
        await dev_env.client.start_workflow(
            CheckoutWorkflow.run,
            request,
            id=checkout_workflow_id(request.order_id),
            task_queue=checkout_settings.task_queue,
        )
        for request in requests
    ]
    retried, skipped = (r.order_id for r in requests)
    await listed_stuck(dev_env, [h.id for h in handles])

    def cli(*args: str) -> tuple[int, str]:
        done = run_cli(dev_env, checkout_settings, "attention", *args)
        return done.returncode, done.stdout + done.stderr

    code, out = await asyncio.to_thread(cli, "list", "--json")
    assert code == 0, out
    listed = {row["order_id"]: row for row in map(json.loads, out.splitlines()) if row["order_id"]}
    for order_id in (retried, skipped):
        assert listed[order_id]["stuck"] == ["refund_payment"]
        assert listed[order_id]["status"] == "NEEDS_ATTENTION"
        assert listed[order_id]["decision"]["reason_code"] == "card_declined"
    code, table = await asyncio.to_thread(cli, "list")
    assert code == 0 and retried in table and "refund_payment" in table, table

    # Skipping needs a reason; nothing changes without one.
    code, out = await asyncio.to_thread(cli, "skip", skipped, "--reason", " ")
    assert code == 2 and "reason" in out, out

    async with httpx.AsyncClient(
        timeout=5, headers=headers_from_env()
    ) as http:  # the fault is fixed
        (await http.put(refunds_down, json={})).raise_for_status()
    code, out = await asyncio.to_thread(cli, "retry", retried)
    assert code == 0 and f"{retried}: retrying refund_payment" in out, out
    code, out = await asyncio.to_thread(
        cli, "skip", skipped, "--reason", "refunded by hand in the PSP"
    )
    assert code == 0 and f"{skipped}: skipped refund_payment" in out, out

    done_retry, done_skip = [await h.result() for h in handles]
    for result in (done_retry, done_skip):
        assert result.status is Outcome.REJECTED
        assert result.reason_code == "card_declined"
        assert [c.name for c in result.compensations] == [
            "refund_payment",
            "release_stock",
            "cancel_order",
        ]
    retried_refund, skipped_refund = done_retry.compensations[0], done_skip.compensations[0]
    assert retried_refund.state == "DONE" and retried_refund.attempts >= 2
    assert skipped_refund.state == "SKIPPED"
    assert skipped_refund.skip_reason == "refunded by hand in the PSP"
    assert all(c.state == "DONE" for c in done_skip.compensations[1:])

    # Nothing is stuck any more: resolving again is refused with a clear message.
    code, out = await asyncio.to_thread(cli, "retry", retried)
    assert code == 1 and retried in out, out
