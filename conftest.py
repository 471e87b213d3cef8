"""Root pytest configuration shared by every package's tests.

It holds the Hypothesis profiles and the suite-wide network guard: no test,
and no library a test calls, may reach a host other than loopback (the
standards allow loopback only at test time).  The guard is autouse at session
scope, so it applies to ``nox -s tests`` and to every ``package_tests`` run
alike (pytest loads this file for any test below it).
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import settings

# CI (``CI=true``, as ``.ci/run`` is run) tries the same examples on every run, so a
# landing cannot pass or fail by chance; a developer's run explores new examples each
# time (the default profile) and is where new counterexamples are found, then kept as
# ``@example``s.  ``HYPOTHESIS_PROFILE`` chooses either explicitly.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("dev", print_blob=True)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
)

_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def _is_loopback(host: object) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode()
    if not isinstance(host, str):
        return False
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True, scope="session")
def _loopback_only() -> Iterator[None]:
    """Fail any connection or name lookup that is not loopback (no real network)."""
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def check(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
            raise ConnectionRefusedError(f"network access blocked in tests: {address!r}")

    def connect(self: socket.socket, address: Any) -> None:
        check(self, address)
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        check(self, address)
        return real_connect_ex(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not _is_loopback(host):
            raise socket.gaierror(f"name lookup blocked in tests: {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    # Patched on the stdlib socket type for the whole session, so that no test (and
    # no library a test calls) can reach a real host.
    socket.socket.connect = connect
    socket.socket.connect_ex = connect_ex
    socket.getaddrinfo = getaddrinfo
    try:
        yield
    finally:
        socket.socket.connect = real_connect
        socket.socket.connect_ex = real_connect_ex
        socket.getaddrinfo = real_getaddrinfo


@pytest.fixture
def anyio_backend() -> str:
    """Run async tests on asyncio (the server's event loop)."""
    return "asyncio"
