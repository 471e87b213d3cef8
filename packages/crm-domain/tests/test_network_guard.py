"""The suite-wide network guard (root ``conftest.py``) applies outside crm-ai too."""

from __future__ import annotations

import asyncio
import socket

import pytest


def test_a_non_loopback_connection_is_refused() -> None:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock,
        pytest.raises(ConnectionRefusedError, match="blocked"),
    ):
        sock.connect(("198.51.100.20", 80))


def test_a_non_loopback_name_lookup_is_refused() -> None:
    with pytest.raises(socket.gaierror, match="blocked"):
        socket.getaddrinfo("example.org", 443)


def test_asyncio_connections_go_through_the_guard() -> None:
    async def dial() -> None:
        await asyncio.open_connection("192.0.2.1", 5432)

    with pytest.raises(ConnectionRefusedError, match="blocked"):
        asyncio.run(dial())


def test_loopback_still_works() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        with socket.create_connection(server.getsockname(), timeout=5):
            pass
