"""The D1 REST client against a real local D1 (Miniflare) through the project's shim."""

from __future__ import annotations

import time

import pytest
from crm_domain.errors import Conflict, Unavailable, ValidationError

from crm_gateway_d1.client import (
    MAX_PARAMS,
    D1Client,
    D1QueryError,
    D1Statement,
    retry_after_seconds,
)
from crm_gateway_d1.local import LocalD1

pytestmark = [pytest.mark.d1, pytest.mark.anyio]


async def _fresh_table(client: D1Client, name: str) -> None:
    await client.batch(
        [
            D1Statement(f"DROP TABLE IF EXISTS {name}"),
            D1Statement(f"CREATE TABLE {name} (id TEXT PRIMARY KEY, n INTEGER NOT NULL)"),
        ]
    )


async def test_statement_round_trip_with_meta(d1_client: D1Client) -> None:
    await _fresh_table(d1_client, "rt")
    inserted = await d1_client.query("INSERT INTO rt (id, n) VALUES (?, ?)", ["a", 7])
    assert inserted.meta.changes == 1
    result = await d1_client.query("SELECT id, n FROM rt WHERE n >= ?", [5])
    assert [dict(r) for r in result.rows] == [{"id": "a", "n": 7}]


async def test_a_failing_statement_rolls_back_the_whole_batch(d1_client: D1Client) -> None:
    await _fresh_table(d1_client, "rb")
    await d1_client.query("INSERT INTO rb (id, n) VALUES ('taken', 1)")
    with pytest.raises(Conflict, match="UNIQUE constraint failed"):
        await d1_client.batch(
            [
                D1Statement("INSERT INTO rb (id, n) VALUES (?, ?)", ("new", 2)),
                D1Statement("UPDATE rb SET n = 99 WHERE id = 'taken'"),
                D1Statement("INSERT INTO rb (id, n) VALUES (?, ?)", ("taken", 3)),
            ]
        )
    rows = (await d1_client.query("SELECT id, n FROM rb ORDER BY id")).rows
    assert [dict(r) for r in rows] == [{"id": "taken", "n": 1}]


async def test_bad_sql_is_a_validation_error_naming_d1s_message(d1_client: D1Client) -> None:
    with pytest.raises(D1QueryError, match="syntax error") as caught:
        await d1_client.query("SELEC 1")
    assert isinstance(caught.value, ValidationError)
    assert caught.value.code == 7500


async def test_not_null_failure_is_a_validation_error(d1_client: D1Client) -> None:
    await _fresh_table(d1_client, "nn")
    with pytest.raises(ValidationError, match=r"NOT NULL constraint failed: nn\.n"):
        await d1_client.query("INSERT INTO nn (id, n) VALUES ('x', NULL)")


async def test_429_with_retry_after_is_retried(local_d1: LocalD1, d1_client: D1Client) -> None:
    local_d1.fail_next(2, status=429, retry_after=1)
    sent_before = d1_client.requests_sent
    started = time.monotonic()
    result = await d1_client.query("SELECT 41 + 1 AS answer")
    waited = time.monotonic() - started
    assert dict(result.rows[0]) == {"answer": 42}
    assert d1_client.requests_sent - sent_before == 3
    # Two Retry-After: 1 answers: the client waited as told, not its 10 ms backoff.
    assert waited >= 1.9


async def test_5xx_is_retried_then_unavailable(local_d1: LocalD1) -> None:
    client = local_d1.client(max_attempts=3)
    try:
        local_d1.fail_next(1, status=503, retry_after=None)
        assert (await client.query("SELECT 1 AS one")).rows[0]["one"] == 1
        local_d1.fail_next(3, status=503, retry_after=None)
        with pytest.raises(Unavailable, match="503"):
            await client.query("SELECT 1")
    finally:
        await client.close()


async def test_bad_token_is_unavailable(local_d1: LocalD1) -> None:
    client = D1Client(
        local_d1.account_id, local_d1.database_id, api_token="wrong", api_base=local_d1.api_base
    )
    try:
        with pytest.raises(Unavailable, match="token"):
            await client.query("SELECT 1")
    finally:
        await client.close()


async def test_unreachable_d1_is_unavailable() -> None:
    client = D1Client(
        "a",
        "b",
        api_token="t",
        api_base="http://127.0.0.1:9/client/v4",
        max_attempts=2,
        backoff=0.01,
    )
    try:
        with pytest.raises(Unavailable, match="unreachable"):
            await client.query("SELECT 1")
    finally:
        await client.close()


async def test_250_parameters_are_refused_before_sending(d1_client: D1Client) -> None:
    sent_before = d1_client.requests_sent
    placeholders = ", ".join("?" * 250)
    with pytest.raises(ValidationError, match=r"250 bound parameters; D1 allows at most 100"):
        await d1_client.query(f"SELECT {placeholders}", list(range(250)))
    assert d1_client.requests_sent == sent_before
    # The limit itself is accepted.
    row = (await d1_client.query(f"SELECT {', '.join('?' * MAX_PARAMS)}", [1] * 100)).rows[0]
    assert len(row) >= 1


async def test_oversized_statement_is_refused(d1_client: D1Client) -> None:
    with pytest.raises(ValidationError, match="bytes; D1 allows at most 100000"):
        await d1_client.query("SELECT '" + "x" * 100_001 + "'")


def test_retry_after_parses_seconds_and_http_dates() -> None:
    from datetime import UTC, datetime

    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds("Thu, 01 Jan 2026 12:00:05 GMT", now=now) == 5.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None
