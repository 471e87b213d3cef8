"""Baseline of ``http_bench.py``: a bare Litestar handler reading a contact with stdlib sqlite3.

No token, no session, no tenant, no IP check, no RBAC, no audit, no gateway:
the practical limit of "Litestar + SQLite" on this machine.  Served by
uvicorn exactly like the full stack (uvloop, httptools, one worker).
"""

from __future__ import annotations

import os
import sqlite3
from typing import Any

from litestar import Litestar, get
from litestar.exceptions import NotFoundException

_db = sqlite3.connect(os.environ["BARE_SQLITE_PATH"], check_same_thread=False)
_db.row_factory = sqlite3.Row


@get("/api/contacts/{contact_id:str}")
async def read_contact(contact_id: str) -> dict[str, Any]:
    """One contact row as JSON."""
    row = _db.execute("SELECT * FROM contacts WHERE id = ?", (contact_id,)).fetchone()
    if row is None:
        raise NotFoundException()
    return dict(row)


app = Litestar([read_contact])
