"""Test support: a loopback HTTP server that speaks an SMS or email provider's wire format.

Shipped in the library (as ``crm_domain.testing`` is) so that this package's
tests and the HTTP server's end-to-end tests script the same stand-in: tests
queue the answers each path gives — status, JSON body, headers, an optional
delay — in the provider's documented format, and read back every request
(path, headers, raw body, JSON or form fields).  The senders then run over real
sockets with the real httpx client; nothing is patched.

Standard library only (``http.server`` in a thread), bound to 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

#: The path of ClickSend's send endpoint under its API root.
CLICKSEND_SEND_PATH = "/v3/sms/send"


class Reply:
    """One scripted HTTP answer."""

    def __init__(
        self,
        status: int = 200,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
    ) -> None:
        self.status = status
        self.body = body
        self.headers = headers or {}
        self.delay = delay


class ProviderServer:
    """A loopback HTTP server answering each path from its own queue."""

    def __init__(self) -> None:
        self.replies: dict[str, deque[Reply]] = defaultdict(deque)
        self.defaults: dict[str, Reply] = {}
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, so connection reuse is real

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                content_type = self.headers.get("Content-Type", "")
                body: Any = None
                form: dict[str, str] | None = None
                if content_type.startswith("application/x-www-form-urlencoded"):
                    form = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
                else:
                    try:
                        body = json.loads(raw)
                    except ValueError:
                        body = None
                with server._lock:
                    server.requests.append(
                        {
                            "path": self.path,
                            "headers": dict(self.headers),
                            "raw": raw,
                            "json": body,
                            "form": form,
                            "at": time.monotonic(),
                            "client_port": self.client_address[1],
                        }
                    )
                    queue = server.replies[self.path]
                    reply = queue.popleft() if queue else server.defaults.get(self.path)
                if reply is None:
                    reply = Reply(500, {"error": f"no reply scripted for {self.path}"})
                if reply.delay:
                    time.sleep(reply.delay)
                data = json.dumps(reply.body).encode() if reply.body is not None else b""
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and left

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def queue(self, path: str, *replies: Reply) -> None:
        """Answer the next requests to ``path`` with these replies, in order."""
        self.replies[path].extend(replies)

    def to(self, path: str) -> list[dict[str, Any]]:
        """Every request received on ``path``."""
        return [r for r in self.requests if r["path"] == path]


@contextlib.contextmanager
def running_provider_server() -> Iterator[ProviderServer]:
    """A :class:`ProviderServer` serving on 127.0.0.1 until the block ends."""
    server = ProviderServer()
    server.thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


def clicksend_message(to: str, status: str = "SUCCESS", **extra: Any) -> dict[str, Any]:
    """One entry of ClickSend's ``data.messages`` in a ``POST /v3/sms/send`` answer."""
    entry: dict[str, Any] = {
        "direction": "out",
        "date": 1436871253,
        "to": to,
        "body": "x",
        "from": "+61411111111",
        "schedule": "",
        "message_id": f"BF7AD270-0DE2-418B-B606-{abs(hash(to)) % 10**12:012d}",
        "message_parts": 1,
        "message_price": "0.0770",
        "custom_string": "",
        "user_id": 1,
        "subaccount_id": 1,
        "country": "AU",
        "carrier": "Telstra",
        "status": status,
    }
    entry.update(extra)
    return entry


def clicksend_envelope(*messages: dict[str, Any]) -> dict[str, Any]:
    """ClickSend's 200 answer to ``POST /v3/sms/send`` carrying these per-message results."""
    return {
        "http_code": 200,
        "response_code": "SUCCESS",
        "response_msg": "Messages queued for delivery.",
        "data": {
            "total_price": 0.077,
            "total_count": len(messages),
            "queued_count": sum(m["status"] == "SUCCESS" for m in messages),
            "messages": list(messages),
            "_currency": {"currency_name_short": "AUD", "currency_prefix_d": "$"},
        },
    }


__all__ = [
    "CLICKSEND_SEND_PATH",
    "ProviderServer",
    "Reply",
    "clicksend_envelope",
    "clicksend_message",
    "running_provider_server",
]
