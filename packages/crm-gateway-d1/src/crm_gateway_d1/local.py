"""Run a local D1 (Miniflare's workerd) behind the project's D1 REST shim.

For tests and local development: the gateway then talks HTTP to real D1
storage exactly as it talks to ``api.cloudflare.com``.  It needs Node.js 20+
and the pinned npm packages of ``packages/crm-gateway-d1/d1-local`` (``npm ci
--prefix packages/crm-gateway-d1/d1-local``); set ``CRM_D1_LOCAL_DIR`` when
that directory lives elsewhere.

    local = LocalD1(Path(".d1-data"))
    local.start()            # prints nothing; local.api_base is the API root
    # CRM_D1_API_BASE=local.api_base CRM_D1_API_TOKEN=local.token
    # CRM_DATABASE_URL=d1://{local.account_id}/{local.database_id}
    local.stop()
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

import httpx

from crm_gateway_d1.client import D1Client
from crm_gateway_d1.queues import CloudflareQueue

#: The bearer the local D1 expects by default: it listens on loopback only.
LOCAL_BEARER = "local-d1-token"


class LocalD1NotInstalled(RuntimeError):
    """Node.js or the pinned Miniflare packages are missing."""


def d1_local_dir() -> Path:
    """Where the shim (``worker.mjs``, ``launch.mjs``, ``node_modules``) lives."""
    configured = os.environ.get("CRM_D1_LOCAL_DIR")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[2] / "d1-local"


class LocalD1:
    """One Miniflare process serving D1's REST API, restartable on the same data."""

    def __init__(
        self,
        persist: Path,
        *,
        token: str = LOCAL_BEARER,
        account_id: str = "local-account",
        database_id: str = "local-database",
        queue_id: str = "local-queue",
        test_hooks: bool = False,
        startup_timeout: float = 60.0,
    ) -> None:
        self.persist = persist
        self.token = token
        self.account_id = account_id
        self.database_id = database_id
        self.queue_id = queue_id
        self.test_hooks = test_hooks
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen[str] | None = None
        #: The API root (``http://127.0.0.1:PORT/client/v4``) once started.
        self.api_base = ""

    @property
    def database_url(self) -> str:
        """The ``CRM_DATABASE_URL`` naming this database."""
        return f"d1://{self.account_id}/{self.database_id}"

    def start(self) -> None:
        """Start Miniflare and wait until it serves; raise if it cannot."""
        node = shutil.which("node")
        if node is None:
            raise LocalD1NotInstalled("the local D1 needs Node.js 20+ (`node`) on PATH")
        root = d1_local_dir()
        if not (root / "node_modules" / "miniflare").is_dir():
            raise LocalD1NotInstalled(f"the local D1 needs Miniflare: run `npm ci --prefix {root}`")
        command = [
            node,
            str(root / "launch.mjs"),
            "--persist",
            str(self.persist),
            "--port",
            "0",
            "--token",
            self.token,
            "--account",
            self.account_id,
            "--database",
            self.database_id,
            "--queue",
            self.queue_id,
        ]
        if self.test_hooks:
            command.append("--test-hooks")
        self.process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            # Its own process group, so stopping it also stops the workerd child.
            start_new_session=True,
        )
        line = self._wait_for_url()
        self.api_base = line.partition("=")[2].strip()

    def _wait_for_url(self) -> str:
        process = self.process
        assert process is not None and process.stdout is not None
        stdout = process.stdout
        found: list[str] = []
        seen: list[str] = []

        def read() -> None:
            for line in stdout:
                if line.startswith("D1_LOCAL_URL="):
                    found.append(line)
                    break
                seen.append(line)
            # Keep draining so a chatty workerd never blocks on a full pipe.
            for _line in stdout:
                pass

        threading.Thread(target=read, daemon=True).start()
        waited = 0.0
        while not found and waited < self.startup_timeout and process.poll() is None:
            threading.Event().wait(0.05)
            waited += 0.05
        if not found:
            self.stop()
            raise RuntimeError("the local D1 did not start:\n" + "".join(seen[-30:]))
        return found[0]

    def stop(self) -> None:
        """Stop the process group (node and workerd) and wait for it."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)

    def restart(self) -> None:
        """Stop and start again on the same persist directory."""
        self.stop()
        self.start()

    def client(
        self, *, backoff: float = 0.01, max_backoff: float = 2.0, max_attempts: int = 5
    ) -> D1Client:
        """A client for this D1 (quick retries by default)."""
        return D1Client(
            self.account_id,
            self.database_id,
            api_token=self.token,
            api_base=self.api_base,
            backoff=backoff,
            max_backoff=max_backoff,
            max_attempts=max_attempts,
        )

    def queue(self, *, max_attempts: int = 5) -> CloudflareQueue:
        """A Cloudflare Queues producer for this process's queue (published as ``events``)."""
        return CloudflareQueue(
            self.account_id,
            api_token=self.token,
            api_base=self.api_base,
            queue_ids={"events": self.queue_id},
            backoff=0.01,
            max_backoff=2.0,
            max_attempts=max_attempts,
        )

    def settings(self) -> dict[str, str]:
        """The environment variables that point the CRM at this database."""
        return {
            "CRM_DATABASE_URL": self.database_url,
            "CRM_D1_API_BASE": self.api_base,
            "CRM_D1_API_TOKEN": self.token,
        }

    # Test hooks (only with test_hooks=True) ------------------------------------

    def _hook(self, path: str, body: dict[str, object] | None = None) -> dict[str, Any]:
        root = self.api_base.removesuffix("/client/v4")
        url = root + path
        response = httpx.get(url) if body is None else httpx.post(url, json=body)
        response.raise_for_status()
        result: dict[str, Any] = response.json()["result"]
        return result

    def fail_next(self, count: int, status: int = 429, retry_after: float | None = 1) -> None:
        """Make the next ``count`` API requests answer ``status`` (with ``Retry-After``)."""
        self._hook("/__test__/fail", {"count": count, "status": status, "retry_after": retry_after})

    def received(self) -> list[dict[str, Any]]:
        """Messages the local queue consumer received so far, in delivery order."""
        root = self.api_base.removesuffix("/client/v4")
        response = httpx.get(root + "/__test__/queue")
        response.raise_for_status()
        messages: list[dict[str, Any]] = response.json()["result"]
        return messages

    def requests(self) -> int:
        """API requests that reached D1 so far (to prove batching)."""
        return int(self._hook("/__test__/stats")["requests"])


__all__ = ["LocalD1", "LocalD1NotInstalled", "d1_local_dir"]


def main(argv: list[str] | None = None) -> int:
    """``python -m crm_gateway_d1.local``: run a local D1 and print the settings to use it."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m crm_gateway_d1.local", description="Run a local D1 (Miniflare)."
    )
    parser.add_argument("--persist", default=".d1-data", help="where the data is kept")
    args = parser.parse_args(argv)
    local = LocalD1(Path(args.persist))
    try:
        local.start()
    except LocalD1NotInstalled as exc:
        print(exc, file=sys.stderr)
        return 1
    print("Local D1 is running; in another shell:")
    for name, value in local.settings().items():
        print(f"  export {name}={value}")
    print(f"Ctrl-C stops it (the data stays in {args.persist}).", flush=True)

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    # A plain `kill` must stop Miniflare too: it runs in its own process group.
    signal.signal(signal.SIGTERM, interrupt)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        local.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
