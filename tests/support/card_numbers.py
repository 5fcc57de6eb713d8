"""Finding card numbers in text (histories, logs, spans, stored rows): the net under "no card
number in Temporal, in a log or in a span"."""

import re

from models.common import luhn_ok

# Digits with at most one space or dash between two of them: "4242 4242-4242 4242".
_DIGIT_RUN = re.compile(r"[0-9](?:[ -]?[0-9])*")
# Temporal's run ids and request ids, and dates with their time ("2026-12-02 00:13"): their
# stretches of digits are no card, however they happen to add up with the digits around.
_NOT_CARDS = re.compile(
    r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
    r"|[0-9]{4}-[0-9]{2}-[0-9]{2}(?:[ T][0-9]{2}:[0-9]{2})?"
)
MIN_DIGITS, MAX_DIGITS = 12, 19


def _cards_in_run(run: str) -> list[str]:
    """The card numbers a run of digits holds: the whole run without its separators, or,
    for a run of groups (a card followed by a year, say), stretches of whole groups; of
    overlapping stretches that pass Luhn, the longest (the earliest of equals) is the card."""
    groups = re.split(r"[ -]", run)
    passing: list[tuple[int, int, str]] = []  # (first group, end group, digits)
    for start in range(len(groups)):
        digits = ""
        for end in range(start, len(groups)):
            digits += groups[end]
            if len(digits) > MAX_DIGITS:
                break
            if len(digits) >= MIN_DIGITS and luhn_ok(digits):
                passing.append((start, end + 1, digits))
    kept: list[tuple[int, int, str]] = []
    for start, end, digits in sorted(passing, key=lambda p: (-len(p[2]), p[0])):
        if all(end <= other_start or start >= other_end for other_start, other_end, _ in kept):
            kept.append((start, end, digits))
    return [digits for _, _, digits in sorted(kept)]


def find_card_numbers(text: str) -> list[str]:
    """Every number in `text` written like a card number that passes the Luhn check: 12 to 19
    digits, run together or with a space or a dash between groups, not glued to letters (a
    stretch of digits inside an identifier, "ab123...", is not a card as written). Returned
    as digits only, each once, in the order found."""
    text = _NOT_CARDS.sub(lambda match: " " * len(match.group()), text)
    found: dict[str, None] = {}
    for match in _DIGIT_RUN.finditer(text):
        before = text[match.start() - 1] if match.start() > 0 else ""
        after = text[match.end()] if match.end() < len(text) else ""
        if before.isalpha() or after.isalpha():
            continue
        for digits in _cards_in_run(match.group()):
            found[digits] = None
    return list(found)
