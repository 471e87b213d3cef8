"""Backup and restore of a SQL store: SQLite's online backup API, PostgreSQL's ``pg_dump``.

Used by ``crm db backup PATH`` and ``crm db restore PATH`` (docs/contract.md
"CLI").  Both take the same ``CRM_DATABASE_URL`` the server uses.

* SQLite: :meth:`sqlite3.Connection.backup` copies the live database page by
  page while other connections keep reading and writing (the copy is one
  consistent snapshot).  Restore copies the other way, after checking that
  the file is a SQLite database holding this schema.
* PostgreSQL: ``pg_dump --format=custom`` (one consistent snapshot of the
  database) and ``pg_restore --clean --if-exists --single-transaction``, so a
  failed restore changes nothing.  The client tools must be on ``PATH``; when
  they are not, :class:`BackupToolMissing` names what to install.  The URL's
  user must be able to read every row (the owner or a superuser: the tables
  have row-level security for the application role only).

Failures raise :class:`~crm_domain.errors.ValidationError` (a wrong path, a
file that is not a backup) or :class:`~crm_domain.errors.Unavailable` (the
tool failed), each with a one-line message.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import sqlalchemy as sa
from crm_domain.errors import Unavailable, ValidationError

from crm_gateway_sql.gateway import sqlite_path

#: A table every CRM database has; a restore source without it is not a CRM backup.
_MARKER_TABLE = "hipaa_audit_log"


class BackupToolMissing(Unavailable):
    """A command-line tool the backup needs (``pg_dump``, ``pg_restore``) is not installed."""


def _is_sqlite(url: str) -> bool:
    return url.lower().startswith("sqlite")


def _sqlite_file(url: str) -> Path:
    path = sqlite_path(url)
    if path == ":memory:" or not path:
        raise ValidationError("CRM_DATABASE_URL", "an in-memory SQLite database has no backup")
    return Path(path)


def backup(url: str, target: Path) -> str:
    """Write a backup of the database at ``url`` to ``target``; return what was done.

    ``target`` must not exist (a backup never overwrites another).
    """
    if target.exists():
        raise ValidationError("path", f"{target} exists; a backup never overwrites a file")
    if not target.parent.is_dir():
        raise ValidationError("path", f"{target.parent} is not a directory")
    if _is_sqlite(url):
        return _sqlite_backup(_sqlite_file(url), target)
    if url.lower().startswith("postgresql"):
        return _pg_dump(url, target)
    raise ValidationError("CRM_DATABASE_URL", "backup supports SQLite and PostgreSQL URLs only")


def restore(url: str, source: Path) -> str:
    """Replace the database at ``url`` with the backup at ``source``; return what was done."""
    if not source.is_file():
        raise ValidationError("path", f"{source} is not a file")
    if _is_sqlite(url):
        return _sqlite_restore(source, _sqlite_file(url))
    if url.lower().startswith("postgresql"):
        return _pg_restore(url, source)
    raise ValidationError("CRM_DATABASE_URL", "restore supports SQLite and PostgreSQL URLs only")


# --------------------------------------------------------------------------- SQLite


def _sqlite_backup(database: Path, target: Path) -> str:
    if not database.is_file():
        raise ValidationError("CRM_DATABASE_URL", f"no SQLite database at {database}")
    source = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        destination = sqlite3.connect(target)
        try:
            # Pages in steps: writers are blocked only for one step at a time.
            source.backup(destination, pages=1024)
        finally:
            destination.close()
    except sqlite3.Error as exc:
        target.unlink(missing_ok=True)
        raise Unavailable(f"SQLite backup failed: {exc}") from None
    finally:
        source.close()
    return f"backed up {database} to {target} (SQLite online backup)"


def _check_sqlite_backup(source: Path) -> None:
    try:
        conn = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        try:
            (verdict,) = conn.execute("PRAGMA quick_check").fetchone()
            tables = {
                name
                for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise ValidationError("path", f"{source} is not a SQLite database ({exc})") from None
    if verdict != "ok":
        raise ValidationError("path", f"{source} is damaged: {verdict}")
    if _MARKER_TABLE not in tables:
        raise ValidationError("path", f"{source} is not a CRM backup (no {_MARKER_TABLE} table)")


def _sqlite_restore(source: Path, database: Path) -> str:
    _check_sqlite_backup(source)
    if source.resolve() == database.resolve():
        raise ValidationError("path", "the backup is the database itself")
    try:
        origin = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        try:
            destination = sqlite3.connect(database)
            try:
                # The backup API replaces the destination as one write
                # transaction: readers see the old or the new database, never a mix.
                origin.backup(destination)
            finally:
                destination.close()
        finally:
            origin.close()
    except sqlite3.Error as exc:
        raise Unavailable(f"SQLite restore failed: {exc}") from None
    return f"restored {database} from {source} (SQLite backup API)"


# --------------------------------------------------------------------------- PostgreSQL


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BackupToolMissing(
            f"{name} is not installed or not on PATH "
            "(install the PostgreSQL client tools, e.g. the postgresql-client package)"
        )
    return found


def _libpq(url: str) -> tuple[list[str], dict[str, str]]:
    """Connection options and environment for the libpq tools, from a SQLAlchemy URL."""
    parsed = sa.make_url(url)
    if not parsed.database:
        raise ValidationError("CRM_DATABASE_URL", "names no database")
    args = ["--dbname", parsed.database]
    if parsed.host:
        args += ["--host", parsed.host]
    if parsed.port:
        args += ["--port", str(parsed.port)]
    if parsed.username:
        args += ["--username", parsed.username]
    env = dict(os.environ)
    if parsed.password:
        # The environment, not argv: other users can read a process's arguments.
        env["PGPASSWORD"] = parsed.password
    return args, env


def _run(command: list[str], env: dict[str, str], what: str) -> None:
    try:
        done = subprocess.run(  # noqa: S603 - fixed tool, arguments from our own settings
            command, env=env, capture_output=True, text=True, check=False, timeout=3600
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Unavailable(f"{what} failed: {exc}") from None
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        reason = lines[-1] if lines else f"exit status {done.returncode}"
        raise Unavailable(f"{what} failed: {reason}")


def _pg_dump(url: str, target: Path) -> str:
    tool = _tool("pg_dump")
    args, env = _libpq(url)
    try:
        _run(
            [tool, "--format=custom", "--no-password", "--file", str(target), *args], env, "pg_dump"
        )
    except Unavailable:
        target.unlink(missing_ok=True)
        raise
    return f"backed up {sa.make_url(url).database} to {target} (pg_dump, custom format)"


def _pg_restore(url: str, source: Path) -> str:
    tool = _tool("pg_restore")
    args, env = _libpq(url)
    _run(
        [
            tool,
            "--clean",
            "--if-exists",
            "--single-transaction",
            "--exit-on-error",
            "--no-password",
            *args,
            str(source),
        ],
        env,
        "pg_restore",
    )
    return f"restored {sa.make_url(url).database} from {source} (pg_restore)"


__all__ = ["BackupToolMissing", "backup", "restore"]
