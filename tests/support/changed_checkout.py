"""Changed versions of the checkout, registered under the same name "Checkout", for replay.

Each adds a fraud check before the real checkout runs. `UnguardedFraudCheck` just adds it:
any checkout recorded before the change no longer replays (a NondeterminismError), which is
what a deploy would do to the checkouts still running. `PatchedFraudCheck` guards it with
`workflow.patched`: recorded checkouts take the old path and replay as before.
"""

from datetime import timedelta

from temporalio import workflow

from workflows.checkout import CheckoutWorkflow

with workflow.unsafe.imports_passed_through():
    from models.checkout import CheckoutRequest, CheckoutResult

FRAUD_CHECK_PATCH = "fraud-check-before-order"


async def check_fraud(request: CheckoutRequest) -> None:
    # Replay never runs activities: only the command (type "check_fraud") matters here.
    await workflow.execute_activity(
        "check_fraud", request.customer_id, start_to_close_timeout=timedelta(seconds=10)
    )


@workflow.defn(name="Checkout")
class UnguardedFraudCheck(CheckoutWorkflow):
    @workflow.run
    async def run(self, request: CheckoutRequest) -> CheckoutResult:
        await check_fraud(request)
        return await super().run(request)


@workflow.defn(name="Checkout")
class PatchedFraudCheck(CheckoutWorkflow):
    @workflow.run
    async def run(self, request: CheckoutRequest) -> CheckoutResult:
        if workflow.patched(FRAUD_CHECK_PATCH):
            await check_fraud(request)
        return await super().run(request)
