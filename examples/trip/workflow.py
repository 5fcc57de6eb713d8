"""TripBooking: book a flight, a hotel and a car at once, then take the payment (the pivot).

Everything else (the decision and cancel updates, the deadline, operator retry/skip, the
status query, search attributes, metrics) comes from the saga engine.
"""

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

from temporal_saga import CompensationPolicy, Group, SagaOptions, SagaWorkflow, Step

with workflow.unsafe.imports_passed_through():
    from examples.trip.activities import TripActivities
    from examples.trip.models import TripRequest, TripResult


@workflow.defn(name="TripBooking")
class TripBookingWorkflow(SagaWorkflow[TripRequest, TripResult]):
    book_flight = Step(TripActivities.book_flight, undo=TripActivities.cancel_flight)
    book_hotel = Step(TripActivities.book_hotel, undo=TripActivities.cancel_hotel)
    book_car = Step(TripActivities.book_car, undo=TripActivities.cancel_car)
    # The three providers are booked together.
    providers = Group(book_flight, book_hotel, book_car)
    # The point of no return: once paid, the trip stands.
    take_payment = Step(TripActivities.take_payment, pivot=True)

    @workflow.init
    def __init__(self, trip: TripRequest) -> None:
        super().__init__(
            trip,
            SagaOptions(
                deadline=timedelta(seconds=trip.deadline_seconds),
                compensation=CompensationPolicy(
                    attempts_before_attention=trip.attempts_before_attention
                ),
                # One try per call: the saga retries with its own backoff.
                compensation_retry=RetryPolicy(maximum_attempts=1),
            ),
        )

    @workflow.run
    async def run(self, trip: TripRequest) -> TripResult:
        return await self.run_saga(self.book(trip))

    async def book(self, trip: TripRequest) -> None:
        await self.providers(self.book_flight(trip), self.book_hotel(trip), self.book_car(trip))
        await self.take_payment(trip)
