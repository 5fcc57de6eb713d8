"""The example trip in an environment that holds only the engine's wheel and pytest: copied
there and run by tests/engine/test_engine_install.py (not collected here). The time-skipping test
server is the binary TEMPORAL_TEST_SERVER names: nothing is downloaded."""

import os
import uuid

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from examples.trip.models import Simulation, TripRequest, TripResult, trip_workflow_id
from examples.trip.worker import trip_worker
from examples.trip.workflow import TripBookingWorkflow
from temporal_saga import SEARCH_ATTRIBUTES, Outcome

TASK_QUEUE = "trips-installed"
STEPS = ["book_flight", "book_hotel", "book_car", "take_payment"]


async def book(env: WorkflowEnvironment, declined: bool) -> TripResult:
    trip = TripRequest(
        trip_id=uuid.uuid4().hex[:12],
        traveller="Ada",
        flight="LH 1234",
        hotel="Hotel Adlon, 2 nights",
        car="compact",
        amount_cents=129_900,
        simulate=Simulation(payment_declined=declined),
    )
    return await env.client.execute_workflow(
        TripBookingWorkflow.run, trip, id=trip_workflow_id(trip.trip_id), task_queue=TASK_QUEUE
    )


async def test_a_trip_confirms_and_a_declined_one_is_undone_newest_first() -> None:
    async with await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=os.environ["TEMPORAL_TEST_SERVER"],
        data_converter=pydantic_data_converter,
    ) as env:
        await env.client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=env.client.namespace,
                search_attributes={
                    key.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
                    for key in SEARCH_ATTRIBUTES
                },
            )
        )
        async with trip_worker(env.client, TASK_QUEUE):
            confirmed = await book(env, declined=False)
            declined = await book(env, declined=True)
    # The providers, a group, in the order they ended; then the payment.
    assert confirmed.status is Outcome.CONFIRMED
    assert sorted(confirmed.steps_done[:3]) == sorted(STEPS[:3])
    assert confirmed.steps_done[3:] == STEPS[3:]
    assert confirmed.compensations_done == []
    assert (declined.status, declined.reason_code) == (Outcome.REJECTED, "payment_declined")
    assert declined.failed_step == "take_payment"
    assert sorted(declined.steps_done) == sorted(STEPS[:3])
    assert declined.compensations_done == ["cancel_car", "cancel_hotel", "cancel_flight"]
    assert declined.trip_id != confirmed.trip_id  # the result's own field, from the input
