"""The checkout with every step an activity task (none local first): the bench's
`saga_activities` mode, which shows what local-first steps buy and cost. Registered only by
the bench's checkout workers (harness/bench/checkout_worker.py)."""

from temporalio import workflow

from workflows.checkout import CheckoutWorkflow

with workflow.unsafe.imports_passed_through():
    from models.checkout import CheckoutRequest, CheckoutResult


@workflow.defn(name="CheckoutActivities")
class CheckoutActivitiesWorkflow(CheckoutWorkflow):
    create_order = CheckoutWorkflow.create_order.with_options(local_first=False)
    reserve_stock = CheckoutWorkflow.reserve_stock.with_options(local_first=False)
    charge_payment = CheckoutWorkflow.charge_payment.with_options(local_first=False)
    confirm_order = CheckoutWorkflow.confirm_order.with_options(local_first=False)

    @workflow.init
    def __init__(self, request: CheckoutRequest) -> None:
        super().__init__(request)

    @workflow.run
    async def run(self, request: CheckoutRequest) -> CheckoutResult:
        return await super().run(request)
