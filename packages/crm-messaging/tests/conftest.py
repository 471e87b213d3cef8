"""Fixtures for crm-messaging: real servers on 127.0.0.1 (the loopback-only network
guard is the root ``conftest.py``'s).

* ``provider_server``: :class:`crm_messaging.testing.ProviderServer`, a scriptable
  HTTP server in the providers' documented formats (shared with the HTTP
  server's end-to-end tests).
* ``smtp_server``: a real SMTP server (aiosmtpd) that keeps every message it
  receives, refuses the recipients it is told to, and can require STARTTLS or
  speak implicit TLS with a certificate from a test CA (trustme), and AUTH.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from crm_messaging.testing import ProviderServer, running_provider_server


@pytest.fixture
def provider_server() -> Iterator[ProviderServer]:
    """A running scriptable HTTP server on 127.0.0.1."""
    with running_provider_server() as server:
        yield server


# --- SMTP -------------------------------------------------------------------------


class MailHandler:
    """aiosmtpd handler: keeps messages, refuses listed recipients."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.refuse: set[str] = set()
        self.defer: set[str] = set()
        self.reject_data = False
        self.sessions: list[object] = []

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        if address in self.refuse:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        if address in self.defer:
            return f"450 4.2.0 <{address}>: Recipient address rejected: Greylisted"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.reject_data:
            return "554 5.7.1 Message rejected as spam"
        if not any(s is session for s in self.sessions):
            self.sessions.append(session)
        self.messages.append(
            {
                "mail_from": envelope.mail_from,
                "rcpt_tos": list(envelope.rcpt_tos),
                "content": envelope.original_content or envelope.content,
                "tls": server.transport.get_extra_info("ssl_object") is not None,
                "authenticated": session.authenticated,
            }
        )
        return f"250 2.0.0 Ok: queued as Q{len(self.messages)}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SmtpServer:
    """A running aiosmtpd server and what the tests need to configure a mailer for it."""

    def __init__(self, handler: MailHandler, kwargs: dict[str, Any], ca_file: str | None) -> None:
        self.handler = handler
        self.kwargs = kwargs
        self.ca_file = ca_file
        self.port = int(kwargs["port"])
        self.controller = Controller(handler, **kwargs)
        self.controller.start()

    def stop(self) -> None:
        """Stop the server (open connections are dropped)."""
        self.controller.stop()

    def restart(self) -> None:
        """Stop and start again on the same port, as a server that dropped us would."""
        self.stop()
        self.controller = Controller(self.handler, **self.kwargs)
        self.controller.start()


USER, PASSWORD = "clinic", "s3cret-pass"


def _authenticate(
    server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (
        auth_data.login.decode(),
        auth_data.password.decode(),
    ) == (USER, PASSWORD)
    return AuthResult(success=ok, handled=False)


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[trustme.CA, str]:
    """A throwaway CA and the path of its certificate (for ``CRM_SMTP_CA_FILE``)."""
    ca = trustme.CA()
    path = Path(tmp_path_factory.mktemp("ca")) / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return ca, str(path)


@pytest.fixture
def start_smtp(test_ca: tuple[trustme.CA, str]) -> Iterator[Any]:
    """Start SMTP servers: ``start_smtp(mode)`` with mode ``plain``, ``starttls``
    (STARTTLS required, AUTH after it) or ``tls`` (implicit TLS, AUTH)."""
    ca, ca_file = test_ca
    started: list[SmtpServer] = []

    def start(mode: str) -> SmtpServer:
        handler = MailHandler()
        server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_ctx)
        kwargs: dict[str, Any] = {"hostname": "127.0.0.1", "port": _free_port()}
        if mode == "starttls":
            kwargs.update(
                tls_context=server_ctx,
                require_starttls=True,
                authenticator=_authenticate,
                auth_require_tls=True,
            )
        elif mode == "tls":
            # aiosmtpd only knows of STARTTLS: over implicit TLS it must be told that
            # AUTH is fine (the connection is TLS from the first byte).
            kwargs.update(
                ssl_context=server_ctx, authenticator=_authenticate, auth_require_tls=False
            )
        server = SmtpServer(handler, kwargs, ca_file if mode != "plain" else None)
        started.append(server)
        return server

    yield start
    for server in started:
        with contextlib.suppress(Exception):  # already stopped by the test
            server.stop()
