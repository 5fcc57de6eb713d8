"""tests.support.card_numbers.find_card_numbers: what it finds, and what it leaves alone."""

import json
import uuid

import pytest

from models.payments import CARD_DECLINED, CARD_FLAKY, CARD_OK
from tests.support.card_numbers import find_card_numbers


@pytest.mark.parametrize(
    "written",
    [
        "4242424242424242",
        "4242 4242 4242 4242",
        "4242-4242-4242-4242",
        "4242 4242-4242 4242",
        "4242424242 424242",
    ],
)
def test_finds_a_card_however_it_is_grouped(written: str) -> None:
    assert find_card_numbers(f"card: {written}.") == [CARD_OK]


def test_finds_cards_in_json_in_a_token_and_beside_other_numbers() -> None:
    text = json.dumps({"card_number": CARD_DECLINED, "note": f"pm_{CARD_FLAKY}"})
    assert find_card_numbers(text) == [CARD_DECLINED, CARD_FLAKY]
    # A card followed by another group (an expiry year) is still found.
    assert find_card_numbers("4242 4242 4242 4242 2031") == [CARD_OK]


@pytest.mark.parametrize("digits", [12, 13, 15, 16, 19])
def test_finds_every_card_length(digits: int) -> None:
    body = "5" + "0" * (digits - 2)
    card = next(body + d for d in "0123456789" if find_card_numbers(body + d))
    assert find_card_numbers(f"x {card} y") == [card]


@pytest.mark.parametrize(
    "text",
    [
        "4242424242424241",  # fails the Luhn check
        "42424242424",  # 11 digits
        "42424242424242424242",  # 20 digits run together: no card's length
        "order ab4242424242424242",  # glued to letters: part of an identifier
        "4242424242424242cd",
        "2026-12-01T22:33:50.515032Z",  # a timestamp
        "row 00 2026-12-02 00:13:14 42",  # a date among other numbers
        "ids 1 2 3 4 5 6 7 8 9 10 11",  # small numbers, far apart
        "",
    ],
)
def test_leaves_other_numbers_alone(text: str) -> None:
    assert find_card_numbers(text) == []


def test_uuids_are_not_cards() -> None:
    # Every all-digit UUID stretch whose digits pass Luhn would otherwise be reported.
    text = " ".join(f"{uuid.UUID(int=n * 7919)}" for n in range(1, 2000))
    assert find_card_numbers(text) == []
    assert find_card_numbers("12345678-1234-1234-1234-123456789012") == []


def test_each_card_reported_once_in_order() -> None:
    text = f"{CARD_DECLINED} then {CARD_OK} and {CARD_DECLINED} again"
    assert find_card_numbers(text) == [CARD_DECLINED, CARD_OK]
