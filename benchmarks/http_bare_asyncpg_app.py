"""PostgreSQL baseline of ``http_bench.py``: a bare Litestar handler reading a contact with asyncpg.

No token, no session, no tenant, no IP check, no RBAC, no audit, no gateway, no
transaction: one ``fetchrow`` on a pooled asyncpg connection (pool of 10, as
the gateway's) — the practical limit of "Litestar + asyncpg + PostgreSQL" on
this machine.  Served by uvicorn exactly like the full stack (uvloop,
httptools, one worker).  ``BARE_POSTGRES_DSN`` names the database.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from litestar import Litestar, get
from litestar.exceptions import NotFoundException

_pool: dict[str, Any] = {}


@asynccontextmanager
async def _lifespan(_app: Litestar) -> AsyncIterator[None]:
    pool = await asyncpg.create_pool(os.environ["BARE_POSTGRES_DSN"], min_size=10, max_size=10)
    _pool["pool"] = pool
    try:
        yield
    finally:
        await pool.close()


@get("/api/contacts/{contact_id:str}")
async def read_contact(contact_id: str) -> dict[str, Any]:
    """One contact row as JSON."""
    row = await _pool["pool"].fetchrow("SELECT * FROM contacts WHERE id = $1", contact_id)
    if row is None:
        raise NotFoundException()
    return dict(row)


app = Litestar([read_contact], lifespan=[_lifespan])
