"""Fixtures for crm-ai: a scriptable model server (the loopback-only network guard is the
root ``conftest.py``'s, for the whole suite).

The model server is a real HTTP server on 127.0.0.1 (``http.server`` in a
thread).  Tests queue the answers it gives — a status, headers, a body and an
optional delay — and read back every request it received, so the providers are
exercised over real sockets with each provider's wire format.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


class Reply:
    """One scripted answer."""

    def __init__(
        self,
        status: int = 200,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
        raw: bytes | None = None,
    ) -> None:
        self.status = status
        self.body = body
        self.headers = headers or {}
        self.delay = delay
        self.raw = raw

    def payload(self) -> bytes:
        if self.raw is not None:
            return self.raw
        return json.dumps(self.body).encode()


class ModelServer:
    """A loopback HTTP server answering from a queue (or a default reply)."""

    def __init__(self) -> None:
        self.replies: deque[Reply] = deque()
        self.default: Reply | None = None
        self.requests: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                with server._lock:
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                    try:
                        body = json.loads(raw)
                    except ValueError:
                        body = None
                    server.requests.append(
                        {"path": self.path, "headers": dict(self.headers), "body": body, "raw": raw}
                    )
                    reply = server.replies.popleft() if server.replies else server.default
                try:
                    if reply is None:
                        reply = Reply(500, {"error": "no reply scripted"})
                    if reply.delay:
                        time.sleep(reply.delay)
                    data = reply.payload()
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
                finally:
                    with server._lock:
                        server.in_flight -= 1

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def queue(self, *replies: Reply) -> None:
        """Answer the next requests with these replies, in order."""
        self.replies.extend(replies)

    def bodies(self) -> list[str]:
        """Every request body received, as text."""
        return [r["raw"].decode("utf-8", "replace") for r in self.requests]


@pytest.fixture
def model_server() -> Iterator[ModelServer]:
    """A running scriptable model server on 127.0.0.1."""
    server = ModelServer()
    server.thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


def workers_reply(response: Any, *, status: int = 200, success: bool = True) -> Reply:
    """A Workers AI REST envelope around ``response`` (a string or an object)."""
    return Reply(
        status,
        {
            "result": {
                "response": response,
                "usage": {"prompt_tokens": 10, "completion_tokens": 5},
            },
            "success": success,
            "errors": [],
            "messages": [],
        },
    )


def openai_reply(content: Any, *, status: int = 200) -> Reply:
    """An OpenAI chat-completion body whose first choice says ``content``."""
    return Reply(
        status,
        {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": 0,
            "model": "test-model",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        },
    )


@pytest.fixture
def replies() -> Any:
    """Builders for scripted replies (so test modules need not import conftest)."""

    class Builders:
        reply = Reply
        workers = staticmethod(workers_reply)
        openai = staticmethod(openai_reply)

    return Builders
