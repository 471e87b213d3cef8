"""SQLite commits are durable by default, and the fsync does not hold up the event loop."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from crm_domain.entities import Location
from crm_domain.errors import ValidationError
from crm_domain.queries import LocationQuery

from crm_gateway_sql.gateway import SqlGateway, create_gateway

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 3, 1, tzinfo=UTC)
FULL, NORMAL = 2, 1  # PRAGMA synchronous values


def _synchronous(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA synchronous").fetchone()[0])


def _location(code: str) -> Location:
    return Location(id=f"loc-{code}", code=code, name=code, timezone="UTC", created_at=NOW)


async def _add(gateway: SqlGateway, code: str) -> None:
    async with gateway.unit_of_work(None) as uow:
        await uow.locations.add(_location(code))
        await uow.commit()


@pytest.mark.parametrize(
    ("suffix", "options", "expected"),
    [
        ("", {}, FULL),
        ("?synchronous=normal", {}, NORMAL),
        ("?synchronous=FULL", {}, FULL),
        ("", {"synchronous": "normal"}, NORMAL),
    ],
)
async def test_a_file_database_is_durable_unless_asked_otherwise(
    tmp_path: Path, suffix: str, options: dict[str, Any], expected: int
) -> None:
    gateway = create_gateway(f"sqlite+aiosqlite:///{tmp_path / 'crm.db'}{suffix}", **options)
    try:
        await gateway.migrate()
        await _add(gateway, "a")
        db = gateway.sqlite_database
        assert db is not None
        assert db.path == str(tmp_path / "crm.db")  # the query is not part of the file name
        assert _synchronous(db.writer) == expected
        assert _synchronous(db.reader) == expected
    finally:
        await gateway.close()


async def test_an_in_memory_database_skips_the_fsync() -> None:
    gateway = create_gateway("sqlite+aiosqlite://")
    try:
        db = gateway.sqlite_database
        assert db is not None
        assert not db.durable
        assert _synchronous(db.writer) == NORMAL
    finally:
        await gateway.close()


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("sqlite+aiosqlite:///{dir}/crm.db?synchronous=off", "synchronous"),
        ("sqlite+aiosqlite:///{dir}/crm.db?journal=delete", "options"),
    ],
)
def test_a_bad_durability_setting_is_named(tmp_path: Path, url: str, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        create_gateway(url.format(dir=tmp_path))
    assert caught.value.field == field


async def test_a_durable_commit_runs_off_the_event_loop(tmp_path: Path) -> None:
    gateway = create_gateway(f"sqlite+aiosqlite:///{tmp_path / 'crm.db'}")
    try:
        await gateway.migrate()
        db = gateway.sqlite_database
        assert db is not None
        threads: list[str] = []
        # Record which thread runs each COMMIT (a trace callback sees every statement).
        db.writer.set_trace_callback(
            lambda sql: threads.append(threading.current_thread().name) if sql == "COMMIT" else None
        )
        await _add(gateway, "a")
        assert threads and all(name != threading.main_thread().name for name in threads)
    finally:
        await gateway.close()


async def test_a_cancelled_durable_commit_still_commits_and_frees_the_writer(
    tmp_path: Path,
) -> None:
    gateway = create_gateway(f"sqlite+aiosqlite:///{tmp_path / 'crm.db'}")
    try:
        await gateway.migrate()
        db = gateway.sqlite_database
        assert db is not None
        started = asyncio.Event()

        async def add_and_commit() -> None:
            async with gateway.unit_of_work(None) as uow:
                await uow.locations.add(_location("a"))
                started.set()
                await uow.commit()

        task = asyncio.create_task(add_and_commit())
        await started.wait()
        await asyncio.sleep(0)  # the task is now waiting for its COMMIT thread
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The COMMIT was not interrupted half-way: the row is there, and the
        # writer is free for the next unit of work.
        assert not db.write_lock.locked()
        await _add(gateway, "b")
        async with gateway.unit_of_work(None) as uow:
            codes = sorted(loc.code for loc in (await uow.locations.list(LocationQuery())).items)
        assert codes == ["a", "b"]
    finally:
        await gateway.close()
