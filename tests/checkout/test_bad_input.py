"""Bad input, generated: the checkout request, the CLI's `checkout`, and every service's API.

- `CheckoutRequest` (hypothesis): any input is either a request that keeps every rule, or a
  ValidationError whose every error names a field of the request and never echoes the card;
  a price sent by the customer is always refused (the shop sets prices), and so is a card
  number where the payment token goes.
- `checkout-saga checkout` (hypothesis): any arguments exit 0 with the parsed cart sent on
  (the card tokenized first, only the token in the request), or 2 with the reason and
  nothing started, nothing tokenized; never a crash.
- Each service's OpenAPI (schemathesis, in-process over ASGI): schema-valid requests never get
  a 5xx; schema-invalid ones get a 4xx naming the field, and nothing is written.
"""

import hashlib
import json
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import negative_data_rejection
from typer.testing import CliRunner

import starter.cli as cli
from models.checkout import CheckoutRequest, CheckoutResult
from models.common import PAYMENT_TOKEN_PATTERN, card_digits
from models.payments import CARD_DECLINED, CARD_FLAKY, CARD_OK, PaymentMethod
from services.analytics.app import create_app as analytics_app
from services.auth import headers_from_env, publishable_key_from_env, publishable_key_headers
from services.deadletters.app import create_app as deadletters_app
from services.email.app import create_app as email_app
from services.inventory.app import create_app as inventory_app
from services.loyalty.app import create_app as loyalty_app
from services.orders.app import create_app as orders_app
from services.payments.app import create_app as payments_app
from services.warehouse.app import create_app as warehouse_app
from starter.checkouts import describe_validation_error
from temporal_saga.models import Outcome

# Generated input by the thousand (hypothesis, schemathesis): `make test` runs it.
pytestmark = pytest.mark.slow

FIELDS = set(CheckoutRequest.model_fields)
CARDS = [CARD_OK, CARD_DECLINED, CARD_FLAKY]

ids = st.one_of(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}", fullmatch=True), st.text())
emails = st.one_of(st.emails(), st.text(max_size=300))
cards = st.one_of(
    st.sampled_from(CARDS),
    st.text(alphabet="0123456789 -", max_size=25),
    st.text(max_size=25),
)
tokens = st.one_of(
    st.from_regex(PAYMENT_TOKEN_PATTERN, fullmatch=True),
    cards,  # a card number where the token goes: always refused
    st.text(max_size=90),
)
currencies = st.one_of(st.sampled_from(["EUR", "USD"]), st.text(max_size=5))
skus = st.one_of(st.from_regex(r"[A-Z0-9][A-Z0-9-]{1,31}", fullmatch=True), st.text(max_size=40))
quantities = st.one_of(st.integers(-5, 1200), st.text(max_size=5), st.none(), st.floats())
prices = st.one_of(st.integers(-100, 10**9), st.floats(), st.text(max_size=5))
items = st.lists(
    st.fixed_dictionaries(
        {"sku": skus, "quantity": quantities},
        # Not a field of a cart item: always refused.
        optional={"unit_price_cents": prices},
    ),
    max_size=55,
)
options = st.fixed_dictionaries(
    {},
    optional={
        "decision_deadline_seconds": st.integers(-10, 100_000),
        "compensation_attempts_before_attention": st.integers(-10, 2000),
    },
)
checkout_bodies = st.fixed_dictionaries(
    {
        "order_id": ids,
        "customer_id": ids,
        "email": emails,
        "payment_token": tokens,
        "items": items,
    },
    optional={"currency": currencies, "options": options, "expected_total_cents": prices},
)

# Derandomized: CI sees the same examples every run (a failure is a bug, never a fluke).
HYPOTHESIS = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
# Per API operation: no shrinking (a failing case is printed as found; shrinking a request
# through schemathesis can take minutes).
API_FUZZ = settings(
    max_examples=20,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


@HYPOTHESIS
@given(body=checkout_bodies)
@example(  # both outcomes are always exercised
    body={
        "order_id": "o-1",
        "customer_id": "c-1",
        "email": "a@example.com",
        "payment_token": "pm_0123456789abcdefABCDEF",
        "items": [{"sku": "MUG-BLUE", "quantity": 2}],
    }
)
@example(
    body={
        "order_id": "o-1",
        "customer_id": "c-1",
        "email": "a@example.com",
        "payment_token": "4242 4242 4242 4242",
        "items": [{"sku": "MUG-BLUE", "quantity": 2, "unit_price_cents": 1}],
    }
)
@example(
    body={
        "order_id": "",
        "customer_id": "c-1",
        "email": "nope",
        "payment_token": "4242424242424241",
        "items": [{"sku": "MUG-BLUE", "quantity": 0}],
    }
)
def test_checkout_request_is_valid_or_names_every_bad_field(body: dict[str, Any]) -> None:
    try:
        request = CheckoutRequest.model_validate(body)
    except ValidationError as err:
        text = describe_validation_error(err)
        for error in err.errors():
            where = error["loc"]
            if where:
                assert where[0] in FIELDS, error
                assert ".".join(str(part) for part in where) in text
            else:  # a rule across fields: its message starts with the field it is about
                assert error["msg"].removeprefix("Value error, ").split(":")[0] in FIELDS
        token = body["payment_token"]
        digits = re.sub(r"[ -]", "", token)
        others = json.dumps({k: v for k, v in body.items() if k != "payment_token"})
        if len(digits) >= 12 and digits not in others:
            assert digits not in text and token not in text
            assert digits not in str(err)  # hidden even in the error's own words
        if card_digits(token) is not None:  # a card number: refused as one, on its field
            assert "payment_token: looks like a card number" in text, text
        for index, item in enumerate(body["items"][:50]):
            if "unit_price_cents" in item and len(body["items"]) <= 50:
                assert f"items.{index}.unit_price_cents" in text  # named, never dropped
        return
    assert not any("unit_price_cents" in item for item in body["items"])
    # Accepted: every rule holds, and it survives the trip through JSON unchanged.
    assert 1 <= len(request.items) <= 50
    assert len({item.sku for item in request.items}) == len(request.items)
    assert all(1 <= item.quantity <= 1000 for item in request.items)
    assert re.fullmatch(PAYMENT_TOKEN_PATTERN, request.payment_token)
    assert re.fullmatch(r"[A-Z]{3}", request.currency)
    assert CheckoutRequest.model_validate_json(request.model_dump_json()) == request


item_texts = st.one_of(
    st.builds(
        lambda sku, q: f"{sku}:{q}",
        st.sampled_from(["MUG-BLUE", "TEE-M", "x", ""]),
        st.integers(-2, 1002),
    ),
    # The old SKU:QUANTITY:PRICE: refused, the price is the shop's.
    st.builds(lambda q, p: f"MUG-BLUE:{q}:{p}", st.integers(-2, 1002), st.integers(-2, 10**9)),
    st.text(max_size=30),
)


@HYPOTHESIS
@given(
    item=st.lists(item_texts, min_size=1, max_size=3),
    email=emails,
    card=cards,
    currency=currencies,
)
@example(item=["MUG-BLUE:2", "TEE-M:1"], email="a@example.com", card=CARD_OK, currency="EUR")
@example(item=["MUG-BLUE:0"], email="a@example.com", card=CARD_OK, currency="EUR")
@example(item=["MUG-BLUE:two"], email="a@example.com", card=CARD_OK, currency="EUR")
@example(item=["MUG-BLUE:1:1"], email="a@example.com", card=CARD_OK, currency="EUR")
def test_cli_checkout_parses_or_refuses_without_starting_anything(
    item: list[str], email: str, card: str, currency: str
) -> None:
    placed: list[CheckoutRequest] = []
    tokenized: list[str] = []

    async def tokenize(_url: str, _key: str, card_number: str) -> PaymentMethod:
        tokenized.append(card_number)
        return PaymentMethod(token="pm_fromtheclitest0000", brand="visa", last4="4242")

    async def connect() -> object:
        return object()

    async def decide(_client: object, request: CheckoutRequest, _queue: str) -> tuple[Any, None]:
        placed.append(request)
        result = CheckoutResult(
            order_id=request.order_id,
            status=Outcome.CONFIRMED,
            total_cents=0,
            currency=request.currency,
        )
        return result, None

    args = ["checkout", "--email", email, "--card", card, "--currency", currency, "--json"]
    for text in item:
        args += ["--item", text]
    with (
        patch.object(cli, "tokenize_card", tokenize),
        patch.object(cli, "connect_temporal", connect),
        patch.object(cli, "decide_checkout", decide),
    ):
        result = CliRunner().invoke(cli.app, args)
    assert result.exit_code in (0, 2), (result.output, result.exception)
    if result.exit_code == 2:
        assert placed == [] and tokenized == []  # refused before anything was sent
        assert "Invalid" in result.output or "Error" in result.output, result.output
        return
    [request] = placed
    assert tokenized == [card] and request.payment_token == "pm_fromtheclitest0000"
    assert CheckoutResult.model_validate_json(result.output.strip().splitlines()[-1]).status == (
        Outcome.CONFIRMED
    )
    assert [f"{i.sku}:{i.quantity}" for i in request.items] == [
        ":".join(str(int(part)) if n else part for n, part in enumerate(text.split(":")))
        for text in item
    ]
    assert request.email == email and request.currency == currency


# -- every service's API ---------------------------------------------------------------------

SERVICE_APPS: dict[str, Callable[[str], FastAPI]] = {
    "orders": orders_app,
    "inventory": inventory_app,
    # The flaky test card answers 503 on purpose (a transient fault); not here.
    "payments": lambda db: payments_app(db, flaky_failures=0),
    "email": email_app,
    "warehouse": warehouse_app,
    "analytics": analytics_app,
    "loyalty": loyalty_app,
    "deadletters": deadletters_app,
}
# Probes and fault injection are not business input.
NOT_FUZZED = ("/health", "/admin")


def _snapshot(db: Path) -> str:
    conn = sqlite3.connect(db)
    try:
        return hashlib.sha256("\n".join(conn.iterdump()).encode()).hexdigest()
    finally:
        conn.close()


def _operations(app: FastAPI) -> list[Any]:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    # The token is sent on every call; generating (broken) auth headers is not the point here.
    schema.config.generation.update(with_security_parameters=False)
    operations = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()  # the service's own OpenAPI must load
        operations.append(result.ok())
    return [op for op in operations if not op.path.startswith(NOT_FUZZED)]


def _names_the_field(case: Case[Any], status: int, body: dict[str, Any]) -> None:
    if status == 422 and body.get("code") == "invalid_request" and isinstance(case.body, dict):
        assert body.get("field"), body  # which field was wrong


def _refuses_invalid(op: Any, db: Path, headers: dict[str, str]) -> int:
    """Invalid input (schemathesis breaks one part: body, path or query) gets a 4xx
    (negative_data_rejection knows which breaks must be refused: an extra query parameter
    need not be) naming the field, and the store is unchanged. Returns how many were refused."""
    refused = [0]

    @API_FUZZ
    @given(case=op.as_strategy(generation_mode=GenerationMode.NEGATIVE))
    def refuses(case: Case[Any]) -> None:
        before = _snapshot(db)
        response = case.call(headers=headers)
        case.validate_response(
            response, checks=[not_a_server_error, negative_data_rejection], headers=headers
        )
        if response.status_code in (400, 422):  # refused as invalid: named, not written
            body = response.json() if response.content else {}
            _names_the_field(case, response.status_code, body)
            assert _snapshot(db) == before, f"{case.method} {case.path} wrote"
            refused[0] += 1

    refuses()
    return refused[0]


def _answers_valid(op: Any, headers: dict[str, str]) -> None:
    """Valid input per the schema gets an answer (business refusals are 4xx), never a 5xx."""

    @API_FUZZ
    @given(case=op.as_strategy(generation_mode=GenerationMode.POSITIVE))
    def answers(case: Case[Any]) -> None:
        response = case.call(headers=headers)
        case.validate_response(response, checks=[not_a_server_error], headers=headers)

    answers()


@pytest.mark.parametrize("service", sorted(SERVICE_APPS))
def test_service_api_refuses_invalid_input_and_never_fails(tmp_path: Path, service: str) -> None:
    # The service token, and the publishable key POST /payment-methods takes instead.
    headers = headers_from_env() | publishable_key_headers(publishable_key_from_env())
    invalid_db, valid_db = tmp_path / "invalid.sqlite", tmp_path / "valid.sqlite"
    refused: dict[str, int] = {}
    for op in _operations(SERVICE_APPS[service](str(invalid_db))):
        if len(op.body) or len(op.path_parameters):
            refused[f"{op.method} {op.path}"] = _refuses_invalid(op, invalid_db, headers)
        elif len(op.query):  # free-text filters may accept anything; never a 5xx, no write
            _refuses_invalid(op, invalid_db, headers)
    for op in _operations(SERVICE_APPS[service](str(valid_db))):
        _answers_valid(op, headers)
    # Every operation that takes a body or a path parameter was fed invalid ones, refused.
    assert refused and all(refused.values()), refused
