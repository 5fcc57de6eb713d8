"""A small saga with a step after its pivot (tests/engine/test_reconcile_generic.py): hold the
stock (undone by releasing it), take the money (the pivot), ship the parcel. In a module of
its own, with few imports: the workflow sandbox imports it again for every run."""

import asyncio
from datetime import timedelta

from pydantic import BaseModel
from temporalio import activity, workflow
from temporalio.exceptions import ApplicationError

from temporal_saga import SagaResult, SagaWorkflow, Step

# What the parcel saga's activities did, by parcel.
LEDGER: dict[str, list[str]] = {}


class Parcel(BaseModel):
    parcel_id: str
    # The step after the pivot takes this long, or fails for good.
    ship_seconds: float = 0
    ship_fails: bool = False
    # The undo of the first step takes this long.
    release_seconds: float = 0


def _did(parcel: Parcel, what: str) -> None:
    LEDGER.setdefault(parcel.parcel_id, []).append(what)


@activity.defn
async def hold_stock(parcel: Parcel) -> None:
    _did(parcel, "hold")


@activity.defn
async def release_stock(parcel: Parcel) -> None:
    await asyncio.sleep(parcel.release_seconds)
    _did(parcel, "release")


@activity.defn
async def take_money(parcel: Parcel) -> None:
    _did(parcel, "charge")


@activity.defn
async def ship_parcel(parcel: Parcel) -> None:
    await asyncio.sleep(parcel.ship_seconds)
    if parcel.ship_fails:
        raise ApplicationError("no carrier takes it", type="no_carrier", non_retryable=True)
    _did(parcel, "ship")


@workflow.defn(name="ParcelDispatch")
class ParcelWorkflow(SagaWorkflow[Parcel, SagaResult]):
    hold = Step(hold_stock, undo=release_stock)
    charge = Step(take_money, pivot=True)
    ship = Step(ship_parcel, start_to_close_timeout=timedelta(seconds=30))

    @workflow.init
    def __init__(self, parcel: Parcel) -> None:
        super().__init__(parcel)

    @workflow.run
    async def run(self, parcel: Parcel) -> SagaResult:
        return await self.run_saga(self.dispatch(parcel))

    async def dispatch(self, parcel: Parcel) -> None:
        await self.hold(parcel)
        await self.charge(parcel)
        await self.ship(parcel)


PARCEL_ACTIVITIES = [hold_stock, release_stock, take_money, ship_parcel]
