"""The trip's providers: an airline, a hotel, a car rental and a payment desk.

They keep their bookings in the worker's memory: enough to show the engine, not a place to
keep real bookings. Like every saga's activities they are idempotent (a booking's id is the
trip's and the kind's), and a cancellation that arrives before its booking leaves a tombstone
so that the late booking is refused: a step that timed out may still land after its undo ran.
"""

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable

from temporalio import activity
from temporalio.exceptions import ApplicationError

from examples.trip.models import Booking, TripRequest

CANCELLED = "cancelled"


class TripActivities:
    def __init__(self) -> None:
        self._bookings: dict[str, str] = {}  # booking id -> what, or CANCELLED
        self._cancel_attempts: Counter[str] = Counter()

    @activity.defn(name="book_flight")
    async def book_flight(self, trip: TripRequest) -> Booking:
        return await self._book(trip, "flight", trip.flight)

    @activity.defn(name="book_hotel")
    async def book_hotel(self, trip: TripRequest) -> Booking:
        return await self._book(trip, "hotel", trip.hotel)

    @activity.defn(name="book_car")
    async def book_car(self, trip: TripRequest) -> Booking:
        return await self._book(trip, "car", trip.car)

    @activity.defn(name="take_payment")
    async def take_payment(self, trip: TripRequest) -> Booking:
        await _maybe_slow(trip, "take_payment")
        if trip.simulate.payment_declined:
            raise ApplicationError(
                "the payment was declined", type="payment_declined", non_retryable=True
            )
        return Booking(booking_id=f"{trip.trip_id}:payment", kind="payment", what="paid")

    @activity.defn(name="cancel_flight")
    async def cancel_flight(self, trip: TripRequest) -> None:
        self._cancel(trip, "flight")

    @activity.defn(name="cancel_hotel")
    async def cancel_hotel(self, trip: TripRequest) -> None:
        self._cancel(trip, "hotel")

    @activity.defn(name="cancel_car")
    async def cancel_car(self, trip: TripRequest) -> None:
        self._cancel(trip, "car")

    def all(self) -> list[Callable[..., Awaitable[object]]]:
        return [
            self.book_flight,
            self.book_hotel,
            self.book_car,
            self.take_payment,
            self.cancel_flight,
            self.cancel_hotel,
            self.cancel_car,
        ]

    async def _book(self, trip: TripRequest, kind: str, what: str) -> Booking:
        await _maybe_slow(trip, f"book_{kind}")
        booking_id = f"{trip.trip_id}:{kind}"
        if self._bookings.get(booking_id) == CANCELLED:
            raise ApplicationError(
                f"{booking_id} was cancelled before it was made",
                type="cancelled",
                non_retryable=True,
            )
        self._bookings[booking_id] = what
        return Booking(booking_id=booking_id, kind=kind, what=what)

    def _cancel(self, trip: TripRequest, kind: str) -> None:
        booking_id = f"{trip.trip_id}:{kind}"
        self._cancel_attempts[booking_id] += 1
        if self._cancel_attempts[booking_id] <= trip.simulate.cancel_failures.get(
            f"cancel_{kind}", 0
        ):
            raise ApplicationError(f"the {kind} desk does not answer", type="provider_down")
        self._bookings[booking_id] = CANCELLED  # a tombstone when it was never booked


async def _maybe_slow(trip: TripRequest, step: str) -> None:
    if trip.simulate.slow_step == step:
        await asyncio.sleep(trip.simulate.slow_seconds)
