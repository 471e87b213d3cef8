"""The CLI's admin commands run the same use cases as the HTTP API.

Each command is one unit of work: its data change, its domain event (outbox)
and its audit entry commit together or not at all, and the audit entry says
the operator acted from the CLI, through which command.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest

from crm_http_litestar.testing import one_line_error, run_crm

KEY = "cli-services-secret-key-0123456789-abcdef"


def crm(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``crm`` with a SQLite database in ``tmp_path`` and this test's secret key."""
    return run_crm(tmp_path, *args, CRM_SECRET_KEY=KEY)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def brisbane(tmp_path: Path) -> Path:
    """A migrated database with one location, ``brisbane``."""
    ok(crm(tmp_path, "db", "upgrade"))
    ok(
        crm(
            tmp_path,
            "location",
            "add",
            "brisbane",
            "--name",
            "Brisbane",
            "--timezone",
            "Australia/Brisbane",
        )
    )
    return tmp_path / "crm.db"


def rows(db: Path, sql: str, *args: object) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, args).fetchall()


def test_user_add_commits_its_audit_entry_with_the_membership(
    tmp_path: Path, brisbane: Path
) -> None:
    # The store refuses the membership's audit entry (a trigger, as a full or
    # read-only audit table would): the user and membership must not be stored.
    with sqlite3.connect(brisbane) as conn:
        conn.execute(
            "CREATE TRIGGER refuse_membership_audit BEFORE INSERT ON hipaa_audit_log "
            "WHEN NEW.resource_type = 'membership' "
            "BEGIN SELECT RAISE(ABORT, 'audit log refused the entry'); END"
        )
    failed = crm(tmp_path, "user", "add", "rad@avatar-imaging.example", "--location",
                 "brisbane", "--role", "doctor")  # fmt: skip
    assert "audit log refused the entry" in one_line_error(failed)
    assert rows(brisbane, "SELECT count(*) FROM staff_users") == [(0,)]
    assert rows(brisbane, "SELECT count(*) FROM user_permissions") == [(0,)]
    assert rows(brisbane, "SELECT count(*) FROM outbox WHERE name = 'MembershipGranted'") == [(0,)]

    with sqlite3.connect(brisbane) as conn:
        conn.execute("DROP TRIGGER refuse_membership_audit")
    ok(crm(tmp_path, "user", "add", "rad@avatar-imaging.example", "--location", "brisbane",
           "--role", "doctor"))  # fmt: skip
    assert rows(brisbane, "SELECT role FROM user_permissions") == [("doctor",)]
    (membership_id,) = rows(brisbane, "SELECT id FROM user_permissions")[0]
    audit = rows(
        brisbane,
        "SELECT user_id, action, resource_type, resource_id, outcome, request_method, "
        "request_path FROM hipaa_audit_log WHERE resource_type = 'membership'",
    )
    assert audit == [(None, "CREATE", "membership", membership_id, "success", "CLI",
                      "crm user add")]  # fmt: skip
    events = rows(brisbane, "SELECT payload FROM outbox WHERE name = 'MembershipGranted'")
    assert [json.loads(str(p))["membership_id"] for (p,) in events] == [membership_id]


def test_every_admin_command_is_audited_as_the_cli_with_singular_resource_types(
    tmp_path: Path, brisbane: Path
) -> None:
    ok(crm(tmp_path, "user", "add", "a@avatar-imaging.example", "--location", "brisbane",
           "--role", "admin"))  # fmt: skip
    ok(crm(tmp_path, "ip", "allow", "10.20.0.0/16", "--location", "brisbane"))
    assert "10.20.0.0/16" in ok(crm(tmp_path, "ip", "list", "--location", "brisbane"))
    ok(crm(tmp_path, "ip", "remove", "10.20.0.0/16", "--location", "brisbane"))
    missing = crm(tmp_path, "ip", "remove", "10.20.0.0/16", "--location", "brisbane")
    assert "not in the allowlist of brisbane" in one_line_error(missing)

    audit = rows(
        brisbane,
        "SELECT request_path, action, resource_type, outcome, user_id, request_method "
        "FROM hipaa_audit_log ORDER BY sequence",
    )
    assert [(path, action, kind, outcome) for path, action, kind, outcome, _, _ in audit] == [
        ("crm location add", "CREATE", "location", "success"),
        ("crm user add", "CREATE", "membership", "success"),
        ("crm ip allow", "CREATE", "ip_rule", "success"),
        ("crm ip list", "LIST", "ip_rule", "success"),
        ("crm ip remove", "DELETE", "ip_rule", "success"),
        ("crm ip remove", "DELETE", "ip_rule", "failed"),
    ]
    assert {(user, method) for *_, user, method in audit} == {(None, "CLI")}
    events = [name for (name,) in rows(brisbane, "SELECT name FROM outbox ORDER BY event_id")]
    assert events == ["LocationCreated", "MembershipGranted", "IpRuleAdded", "IpRuleRemoved"]
    assert ok(crm(tmp_path, "audit", "verify")).strip()


def test_user_add_twice_changes_the_role_instead_of_failing(tmp_path: Path, brisbane: Path) -> None:
    ok(crm(tmp_path, "user", "add", "r@avatar-imaging.example", "--location", "brisbane",
           "--role", "receptionist"))  # fmt: skip
    again = ok(crm(tmp_path, "user", "add", "r@avatar-imaging.example", "--location",
                   "brisbane", "--role", "doctor"))  # fmt: skip
    assert "r@avatar-imaging.example is doctor at brisbane" in again
    assert rows(brisbane, "SELECT role, is_active FROM user_permissions") == [("doctor", 1)]


def test_demo_seed_creates_access_through_the_use_cases(tmp_path: Path) -> None:
    ok(crm(tmp_path, "demo", "seed", "--contacts", "3"))
    db = tmp_path / "crm.db"
    audited = rows(
        db,
        "SELECT resource_type, count(*) FROM hipaa_audit_log "
        "WHERE request_method = 'DEMO' AND request_path = 'crm demo seed' "
        "AND outcome = 'success' AND user_id IS NULL GROUP BY resource_type ORDER BY 1",
    )
    # 2 locations, 1 grant seeding, 5 memberships (the owner holds two), 4 IP rules,
    # and each location's backdated records as one history import.
    assert audited == [
        ("history_import", 2),
        ("ip_rule", 4),
        ("location", 2),
        ("membership", 5),
        ("permission", 1),
    ]
    events = rows(db, "SELECT name, count(*) FROM outbox GROUP BY name ORDER BY 1")
    assert ("LocationCreated", 2) in events
    assert ("MembershipGranted", 5) in events
    assert ("IpRuleAdded", 4) in events
    assert ("HistoryImported", 2) in events
    # Idempotent: a second run creates (and audits) nothing more.
    assert "already present" in ok(crm(tmp_path, "demo", "seed", "--contacts", "3"))
    again = rows(db, "SELECT count(*) FROM hipaa_audit_log WHERE request_method = 'DEMO'")
    assert again == [(14,)]
