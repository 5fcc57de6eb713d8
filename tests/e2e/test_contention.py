"""Contention end to end: 50 concurrent checkouts for the last 10 units of a SKU."""

import asyncio
import uuid

import httpx
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from models.checkout import CartItem, CheckoutRequest, CheckoutResult
from models.inventory import Reservation, SetStock, StockLevel
from models.payments import CARD_OK, Charge
from services.auth import headers_from_env
from starter.checkouts import place_checkout
from temporal_saga.models import Outcome
from tests.support.cards import card_token
from tests.support.stock import put_price
from worker.settings import Settings

BUYERS = 50
UNITS = 10


async def test_fifty_checkouts_for_the_last_ten_units(
    dev_env: WorkflowEnvironment,
    services: dict[str, str],
    checkout_settings: Settings,
    checkout_worker: Worker,
) -> None:
    run = uuid.uuid4().hex[:8]
    sku = f"LAST-TEN-{run}".upper()
    async with httpx.AsyncClient(headers=headers_from_env(), timeout=30) as http:
        stock = SetStock(name="The last ten", available=UNITS).model_dump()
        (await http.put(f"{services['inventory']}/stock/{sku}", json=stock)).raise_for_status()
        await asyncio.to_thread(put_price, services["orders"], sku, 1500)
        token = await asyncio.to_thread(card_token, services["payments"], CARD_OK)

        def request(n: int) -> CheckoutRequest:
            return CheckoutRequest(
                order_id=f"contention-{run}-{n}",
                customer_id=f"customer-{n}",
                email=f"buyer{n}@example.com",
                payment_token=token,
                items=[CartItem(sku=sku, quantity=1)],
            )

        # All at once: each runs to its end (commit or compensations included).
        results: list[CheckoutResult] = await asyncio.gather(
            *(
                place_checkout(dev_env.client, request(n), checkout_settings.task_queue)
                for n in range(BUYERS)
            )
        )
        confirmed = [r for r in results if r.status is Outcome.CONFIRMED]
        rejected = [r for r in results if r.status is Outcome.REJECTED]
        assert len(confirmed) == UNITS
        assert len(rejected) == BUYERS - UNITS
        assert {r.reason_code for r in rejected} == {"out_of_stock"}
        assert all(r.failed_step == "reserve_stock" for r in rejected)

        level = StockLevel.model_validate_json(
            (await http.get(f"{services['inventory']}/stock/{sku}")).content
        )
        assert (level.available, level.reserved, level.committed) == (0, 0, UNITS)

        # Stock committed exactly for the confirmed orders; the others hold nothing.
        listed = await http.get(f"{services['inventory']}/reservations")
        reservations = [
            Reservation.model_validate(item)
            for item in listed.json()
            if item["order_id"] and item["order_id"].startswith(f"contention-{run}-")
        ]
        committed = {r.order_id for r in reservations if r.status == "COMMITTED"}
        assert committed == {r.order_id for r in confirmed}
        assert not [r for r in reservations if r.status == "RESERVED"]

        # Only the confirmed orders were charged; a refused one never reached payments.
        for result in results:
            charges = await http.get(
                f"{services['payments']}/charges", params={"order_id": result.order_id}
            )
            taken = [Charge.model_validate(c) for c in charges.json()]
            expected = 1 if result.status is Outcome.CONFIRMED else 0
            assert len([c for c in taken if c.status == "SUCCEEDED"]) == expected
