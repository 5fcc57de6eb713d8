"""A checkout whose refund gets stuck: the payments service's fault switch on its refunds
(`refunds_down`, as a fixture in tests/conftest.py), and a declined checkout that asks a
person after one failed refund."""

from collections.abc import Iterator

import httpx

from models.checkout import CheckoutOptions, CheckoutRequest
from models.payments import CARD_DECLINED
from services.auth import headers_from_env
from tests.support.shop import Shop
from tests.support.stock import new_stocked_sku


def refunds_failing(services: dict[str, str]) -> Iterator[str]:
    """Refunds answer 503 until the test clears the fault (PUT {} to the URL yielded);
    charges still work."""
    url = f"{services['payments']}/admin/fault"
    fault = {"fail": True, "paths": ["/charges/"]}
    httpx.put(url, json=fault, timeout=5, headers=headers_from_env()).raise_for_status()
    try:
        yield url
    finally:
        httpx.put(url, json={}, timeout=5, headers=headers_from_env()).raise_for_status()


def declined_request(services: dict[str, str], label: str) -> CheckoutRequest:
    """A checkout whose card is declined, so it refunds; stuck after one failed refund."""
    sku = new_stocked_sku(services, label.upper()[:6], 3, unit_price_cents=700)
    options = CheckoutOptions(compensation_attempts_before_attention=1)
    return Shop(services).request(CARD_DECLINED, (sku, 1), options=options)
