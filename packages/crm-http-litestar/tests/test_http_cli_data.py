"""``crm import contacts``, ``crm db backup`` and ``crm db restore`` as an operator runs them.

Real subprocesses on a real SQLite file (and the real PostgreSQL at
127.0.0.1:5432 for ``pg_dump``); an import killed mid-file is run again and
must end with each person stored once.
"""

from __future__ import annotations

import csv
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import asyncpg
import pytest

from crm_http_litestar.testing import CRM, cli_env, one_line_error, postgres_database, run_crm

KEY = "cli-data-secret-key-0123456789-abcdefghij"


def crm(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_crm(tmp_path, *args, CRM_SECRET_KEY=KEY, **env)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


@pytest.fixture
def brisbane(tmp_path: Path) -> Path:
    """A migrated SQLite database with one location, ``brisbane``."""
    ok(crm(tmp_path, "db", "upgrade"))
    ok(crm(tmp_path, "location", "add", "brisbane", "--name", "Brisbane",
           "--timezone", "Australia/Brisbane"))  # fmt: skip
    return tmp_path / "crm.db"


def write_sheet(path: Path, count: int, *, delimiter: str = ",") -> None:
    """A clinic's export: every 20th row a bad email, every 20th (+7) a repeat of row 1."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle, delimiter=delimiter)
        out.writerow(["First Name", "Surname", "E-mail", "Mobile", "Referrer"])
        for i in range(1, count + 1):
            email, phone = f"Patient{i}@Example.com", f"04{i:08d}"
            if i % 20 == 0:
                email = f"patient{i}.example.com"
            if i % 20 == 7:
                email, phone = "PATIENT1@example.com", ""
            out.writerow([f"P{i}", "Ng", email, phone, "Dr Who"])


MAP = ["--map", "Surname=last_name", "--map", "E-mail=email", "--map", "Mobile=phone",
       "--map", "Referrer="]  # fmt: skip


def test_import_stores_the_good_rows_and_reports_the_rest(tmp_path: Path, brisbane: Path) -> None:
    sheet = tmp_path / "patients.csv"
    write_sheet(sheet, 200, delimiter=";")
    out = ok(crm(tmp_path, "import", "contacts", str(sheet), "--location", "brisbane", *MAP))
    assert "imported 180 contacts at brisbane; refused 10 invalid and 10 duplicate rows" in out
    assert rows(brisbane, "SELECT count(*), count(DISTINCT email) FROM contacts") == [(180, 180)]
    assert rows(brisbane, "SELECT phone FROM contacts WHERE email = 'patient2@example.com'") == [
        ("+61400000002",)
    ]
    with (tmp_path / "patients.rejected.csv").open(newline="") as handle:
        report = list(csv.DictReader(handle))
    assert len(report) == 20
    assert {r["row"] for r in report} == {str(i) for i in range(1, 201) if i % 20 in (0, 7)}
    first_bad = next(r for r in report if r["row"] == "20")
    assert first_bad["field"] == "email" and first_bad["E-mail"] == "patient20.example.com"
    assert next(r for r in report if r["row"] == "7")["reason"] == "duplicate of row 1"
    ok(crm(tmp_path, "audit", "verify"))


def test_a_dry_run_stores_nothing(tmp_path: Path, brisbane: Path) -> None:
    sheet = tmp_path / "patients.csv"
    write_sheet(sheet, 40)
    out = ok(crm(tmp_path, "import", "contacts", str(sheet), "--location", "brisbane", *MAP,
                 "--dry-run"))  # fmt: skip
    assert "would import 36 contacts" in out
    assert rows(brisbane, "SELECT count(*) FROM contacts") == [(0,)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "Surname: is not a contact field"),
        (["--map", "Nope=email"], "Nope: is mapped but not a column of the file"),
        (["--map", "Surname"], "'Surname' is not COLUMN=FIELD"),
        ([*MAP, "--location", "perth"], "no location with code 'perth'"),
    ],
)
def test_import_mistakes_are_one_line_and_change_nothing(
    tmp_path: Path, brisbane: Path, args: list[str], message: str
) -> None:
    sheet = tmp_path / "patients.csv"
    write_sheet(sheet, 5)
    where = [] if "--location" in args else ["--location", "brisbane"]
    line = one_line_error(crm(tmp_path, "import", "contacts", str(sheet), *where, *args))
    assert message in line
    assert rows(brisbane, "SELECT count(*) FROM contacts") == [(0,)]


def test_a_killed_import_resumes_without_duplicates(tmp_path: Path, brisbane: Path) -> None:
    sheet = tmp_path / "patients.csv"
    write_sheet(sheet, 6000)
    args = ["import", "contacts", str(sheet), "--location", "brisbane", *MAP, "--batch-rows", "50"]
    env = cli_env(brisbane, CRM_SECRET_KEY=KEY)
    process = subprocess.Popen([*CRM, *args], cwd=tmp_path, env=env)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            if rows(brisbane, "SELECT count(*) FROM contacts")[0][0] >= 500:
                break
            time.sleep(0.01)
        assert process.poll() is None, "the import ended before it could be interrupted"
        process.send_signal(signal.SIGKILL)
        process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
    partial = rows(brisbane, "SELECT count(*) FROM contacts")[0][0]
    assert 0 < partial < 5400

    out = ok(crm(tmp_path, *args))
    assert "(resumed after row" in out
    assert rows(brisbane, "SELECT count(*), count(DISTINCT email), count(DISTINCT phone) "
                          "FROM contacts") == [(5400, 5400, 5400)]  # fmt: skip
    with (tmp_path / "patients.rejected.csv").open(newline="") as handle:
        report = [r["row"] for r in csv.DictReader(handle)]
    assert sorted(report, key=int) == [str(i) for i in range(1, 6001) if i % 20 in (0, 7)]
    assert "nothing to import" in ok(crm(tmp_path, *args))
    ok(crm(tmp_path, "audit", "verify"))


def test_retention_purge_keeps_what_is_recent(tmp_path: Path, brisbane: Path) -> None:
    sheet = tmp_path / "patients.csv"
    write_sheet(sheet, 10)
    ok(crm(tmp_path, "import", "contacts", str(sheet), "--location", "brisbane", *MAP))
    out = ok(crm(tmp_path, "retention", "purge", "--location", "brisbane"))
    assert "erased 0 contacts at brisbane past 2555 days" in out
    assert rows(brisbane, "SELECT count(*) FROM contacts") == [(9,)]


def test_sqlite_backup_and_restore_round_trip(tmp_path: Path, brisbane: Path) -> None:
    sheet = tmp_path / "patients.csv"
    write_sheet(sheet, 60)
    ok(crm(tmp_path, "import", "contacts", str(sheet), "--location", "brisbane", *MAP))
    backup = tmp_path / "backup.db"
    assert "SQLite online backup" in ok(crm(tmp_path, "db", "backup", str(backup)))
    before = rows(brisbane, "SELECT id, email FROM contacts ORDER BY id")

    ok(crm(tmp_path, "location", "add", "perth", "--name", "Perth", "--timezone",
           "Australia/Perth"))  # fmt: skip
    with sqlite3.connect(brisbane) as conn:
        conn.execute("DELETE FROM contacts")
    assert "--yes" in one_line_error(crm(tmp_path, "db", "restore", str(backup)))

    ok(crm(tmp_path, "db", "restore", str(backup), "--yes"))
    assert rows(brisbane, "SELECT id, email FROM contacts ORDER BY id") == before
    assert rows(brisbane, "SELECT code FROM locations") == [("brisbane",)]
    assert "audit log intact" in ok(crm(tmp_path, "audit", "verify"))


def test_backup_and_restore_refuse_bad_paths_in_one_line(tmp_path: Path, brisbane: Path) -> None:
    assert "never overwrites" in one_line_error(crm(tmp_path, "db", "backup", str(brisbane)))
    not_a_backup = tmp_path / "notes.txt"
    not_a_backup.write_text("hello")
    line = one_line_error(crm(tmp_path, "db", "restore", str(not_a_backup), "--yes"))
    assert "is not a SQLite database" in line
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    line = one_line_error(crm(tmp_path, "db", "restore", str(empty), "--yes"))
    assert "not a CRM backup" in line
    assert rows(brisbane, "SELECT code FROM locations") == [("brisbane",)]


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database (dropped afterwards), as a ``CRM_DATABASE_URL``.

    On the server of ``CRM_TEST_POSTGRES_URL`` (CI sets it as a SQLAlchemy URL).
    """
    with postgres_database("crm_backup") as (url, _dsn):
        yield url


def test_postgres_backup_and_restore_round_trip(tmp_path: Path, postgres_url: str) -> None:
    env = {"CRM_DATABASE_URL": postgres_url}

    def pg(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*CRM, *args],
            cwd=tmp_path,
            env={**cli_env(tmp_path / "unused.db", CRM_SECRET_KEY=KEY), **env},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    ok(pg("db", "upgrade"))
    ok(pg("location", "add", "brisbane", "--name", "Brisbane", "--timezone", "Australia/Brisbane"))
    sheet = tmp_path / "patients.csv"
    write_sheet(sheet, 60)
    ok(pg("import", "contacts", str(sheet), "--location", "brisbane", *MAP))
    backup = tmp_path / "crm.dump"
    assert "pg_dump" in ok(pg("db", "backup", str(backup)))
    ok(pg("location", "add", "perth", "--name", "Perth", "--timezone", "Australia/Perth"))

    assert "pg_restore" in ok(pg("db", "restore", str(backup), "--yes"))

    async def count() -> tuple[int, int]:
        conn = await asyncpg.connect(postgres_url.replace("+asyncpg", ""))
        try:
            contacts = await conn.fetchval("SELECT count(*) FROM contacts")
            locations = await conn.fetchval("SELECT count(*) FROM locations")
        finally:
            await conn.close()
        return int(contacts), int(locations)

    assert anyio.run(count) == (54, 1)
    assert "audit log intact" in ok(pg("audit", "verify"))


def test_a_missing_pg_dump_is_named_in_one_line(tmp_path: Path, postgres_url: str) -> None:
    env = cli_env(tmp_path / "unused.db", CRM_SECRET_KEY=KEY)
    env.update(CRM_DATABASE_URL=postgres_url, PATH=str(tmp_path))
    result = subprocess.run(
        [*CRM, "db", "backup", str(tmp_path / "x.dump")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "pg_dump is not installed" in one_line_error(result)
