"""Fault injection (services.faults): a share of 503s, hangs past the caller's timeout, and
the counts of what was injected."""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from models.faults import FaultCounts, Faults
from services.auth import headers_from_env
from services.email.app import create_app as email_app


def _mail(n: int, run: str) -> dict[str, str]:
    return {
        "email_id": f"fault-{run}-{n}",
        "order_id": f"o-{run}-{n}",
        "to": "a@example.com",
        "subject": "S",
        "body": "B",
    }


@pytest.fixture
async def email(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The email service in this process (ASGI), with its own SQLite file."""
    transport = httpx.ASGITransport(app=email_app(str(tmp_path / "email.sqlite")))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://email", headers=headers_from_env()
    ) as client:
        yield client


async def _statuses(client: httpx.AsyncClient, faults: Faults, count: int) -> list[int]:
    (await client.put("/admin/fault", json=faults.model_dump())).raise_for_status()
    run = uuid.uuid4().hex[:8]
    return [(await client.post("/emails", json=_mail(n, run))).status_code for n in range(count)]


async def test_error_rate_answers_a_seeded_share_503(email: httpx.AsyncClient) -> None:
    flaky = Faults(error_rate=0.5, seed=42)
    first = await _statuses(email, flaky, 40)
    again = await _statuses(email, flaky, 40)
    failed = first.count(503)
    assert 8 <= failed <= 32, first  # about half, and not all or none
    assert set(first) == {201, 503}
    # The same seed draws the same faults: a chaos run can be repeated.
    assert [s == 503 for s in again] == [s == 503 for s in first]
    counts = FaultCounts.model_validate_json((await email.get("/admin/fault/counts")).content)
    assert counts.errors == failed * 2
    assert counts.requests == 80 and counts.hangs == 0 and counts.injected == failed * 2
    # /health and /admin are never affected; clearing the faults ends them.
    assert (await email.get("/health")).status_code == 200
    assert set(await _statuses(email, Faults(), 10)) == {201}


async def test_hang_holds_a_request_then_handles_it(email: httpx.AsyncClient) -> None:
    started = time.monotonic()
    assert await _statuses(email, Faults(hang_seconds=0.4), 2) == [201, 201]
    assert time.monotonic() - started >= 0.8
    started = time.monotonic()
    assert await _statuses(email, Faults(hang_seconds=5, hang_rate=0.0), 3) == [201] * 3
    assert time.monotonic() - started < 4
    counts = FaultCounts.model_validate_json((await email.get("/admin/fault/counts")).content)
    assert counts.hangs == 2


async def test_a_hang_past_the_timeout_loses_the_answer_not_the_work(
    services: dict[str, str],
) -> None:
    """On the real service process: the caller times out, the work is done anyway. That is
    why every write is keyed: the caller's retry gets the first result."""
    url = services["email"]
    run = uuid.uuid4().hex[:8]
    async with httpx.AsyncClient(base_url=url, headers=headers_from_env(), timeout=5) as http:
        fault = Faults(hang_seconds=1.5, paths=["/emails"]).model_dump()
        (await http.put("/admin/fault", json=fault)).raise_for_status()
        try:
            with pytest.raises(httpx.ReadTimeout):
                await http.post("/emails", json=_mail(0, run), timeout=0.3)
        finally:
            (await http.put("/admin/fault", json={})).raise_for_status()
        mail_id = _mail(0, run)["email_id"]
        for _ in range(40):  # bounded: the hang ends after 1.5 s
            found = await http.get(f"/emails/{mail_id}")
            if found.status_code == 200:
                break
            await asyncio.sleep(0.1)
        assert found.status_code == 200
        retry = await http.post("/emails", json=_mail(0, run))
        assert retry.status_code in (200, 201) and retry.json()["email_id"] == mail_id
        listed = await http.get("/emails", params={"order_id": f"o-{run}-0"})
        assert len(listed.json()) == 1
