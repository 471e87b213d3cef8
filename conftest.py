"""Root pytest configuration shared by every package's tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    """Run async tests on asyncio (the server's event loop)."""
    return "asyncio"
