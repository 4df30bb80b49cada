"""The HTTP layer: a stdlib ``ThreadingHTTPServer`` in front of the sandbox pipeline.

Plain ``http.server`` rather than an ASGI framework because fault injection needs the socket:
``drop_after_commit`` closes the TCP connection after the transfer committed and before any
byte of the answer is written, which is exactly the "did my transfer happen?" situation a payout
engine must recover from. One thread per connection (HTTP/1.1 keep-alive, so the SDK's pooled
connections are reused), daemon threads and a deep accept queue for ~100 concurrent clients.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from .admin import handle_admin
from .pipeline import SandboxApp
from .store import Store
from .wire import ApiError, Response, new_id, to_json

log = logging.getLogger("sorae_sandbox")


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: SandboxApp):
        self.app = app
        # Open connections, so stop() can cut idle keep-alive sockets whose handler threads
        # would otherwise linger (and keep serving) after the server is stopped.
        self.open_sockets: set[socket.socket] = set()
        self.sockets_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        with self.sockets_lock:
            self.open_sockets.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self.sockets_lock:
                self.open_sockets.discard(request)

    def cut_connections(self) -> None:
        with self.sockets_lock:
            sockets = list(self.open_sockets)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "SoraeStripeSandbox/1.0"
    timeout = 120  # an idle keep-alive connection gives its thread back eventually
    server: _HTTPServer

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - %s", self.address_string(), format % args)

    def _serve(self, method: str) -> None:
        app = self.server.app
        request_id = new_id("req", 14)
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode("utf-8", "replace") if length > 0 else ""
        app.stats.enter()
        response = Response(500, {})
        try:
            if url.path.startswith("/_sandbox"):
                response = handle_admin(app, method, url.path, raw, url.query)
            elif url.path.startswith("/v1/"):
                response = app.handle_v1(method, url.path, url.query, self.headers, raw, request_id)
            else:
                response = ApiError(
                    404, "invalid_request_error", f"Unrecognized request URL ({method}: {url.path})."
                ).response()
        except Exception:  # a sandbox bug must still answer like Stripe's api_error
            log.exception("sandbox internal error on %s %s", method, url.path)
            response = ApiError(500, "api_error", "Sandbox internal error.").response()
        finally:
            app.stats.leave(url.path, response)
        if response.drop:
            self._drop_connection()
            return
        payload = to_json(response.body)
        self.send_response(response.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Request-Id", request_id)
        self.send_header("Cache-Control", "no-cache, no-store")
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def _drop_connection(self) -> None:
        """Close the TCP connection without writing a single byte of the response."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class SandboxServer:
    """A local Stripe Connect sandbox, served over real HTTP in a background thread.

    ``port=0`` picks a free port (read it back from ``url``). ``state_path=None`` keeps the
    state in a temporary SQLite file deleted on ``stop()``; give a path to keep it across
    restarts. ``balances`` are the default platform's starting balances (``{"usd": 100_000_00}``),
    applied to currencies it does not hold yet.

    Platform accounts (``platforms.py``): ``api_keys=None`` lets any test key that no other
    platform owns act for the default platform; ``api_keys=[...]`` restricts it to those keys (any
    other key: 401). ``platforms={"sk_test_b...": {"usd": 5_000_00}}`` creates more platforms at
    start (API key -> starting balances); ``add_platform`` or ``POST /_sandbox/platforms`` at any
    time. ``rate_limit`` applies to each platform on its own.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        state_path: str | os.PathLike[str] | None = None,
        latency_ms: int = 0,
        rate_limit: float | None = None,
        balances: dict[str, int] | None = None,
        clock_offset_seconds: int = 0,
        allow_live_keys: bool = False,
        api_keys: list[str] | None = None,
        platforms: dict[str, dict[str, int]] | None = None,
    ):
        self.allow_live_keys = allow_live_keys
        self.api_keys = list(api_keys) if api_keys is not None else None
        self.platforms = {k: dict(v) for k, v in (platforms or {}).items()}
        if clock_offset_seconds < 0:
            raise ValueError("the sandbox clock only moves forward: clock_offset_seconds >= 0")
        self.clock_offset_seconds = clock_offset_seconds
        self.host = host
        self.port = port
        self.state_path = os.fspath(state_path) if state_path is not None else None
        self.latency_ms = latency_ms
        self.rate_limit = rate_limit
        self.balances = dict(balances or {})
        self._tmpdir: str | None = None
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.store: Store | None = None
        self.app: SandboxApp | None = None

    def start(self) -> SandboxServer:
        if self._httpd is not None:
            return self
        path = self.state_path
        if path is None:
            self._tmpdir = tempfile.mkdtemp(prefix="stripe-sandbox-")
            path = os.path.join(self._tmpdir, "state.sqlite3")
        self.store = Store(path)
        with self.store.transaction():
            behind = self.clock_offset_seconds - self.store.clock_offset()
            if behind > 0:
                self.store.advance_clock(behind)
        try:
            self.app = SandboxApp(
                self.store,
                self.latency_ms,
                self.rate_limit,
                self.balances,
                self.allow_live_keys,
                self.api_keys,
                self.platforms,
            )
        except Exception:  # a refused start-up option (e.g. a key of two platforms) leaves nothing open
            self.store.close()
            self.store = None
            if self._tmpdir is not None:
                shutil.rmtree(self._tmpdir, ignore_errors=True)
                self._tmpdir = None
            raise
        self._httpd = _HTTPServer((self.host, self.port), self.app)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"stripe-sandbox-{self.url}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        self._httpd.cut_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
        # Let handler threads finish the request they are in before the store goes away.
        deadline = time.monotonic() + 5
        while self._httpd.open_sockets and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.store is not None
        self.store.close()
        self._httpd = self._thread = None
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("SandboxServer is not started")
        host, port = self._httpd.server_address[:2]
        if host in ("0.0.0.0", "::", ""):  # bound to all interfaces: reach it via loopback
            host = "127.0.0.1"
        return f"http://{host}:{port}"

    def add_platform(self, api_key: str, balances: dict[str, int] | None = None) -> str:
        """Create a platform account answering to ``api_key`` (``POST /_sandbox/platforms``); its id."""
        return self.admin("POST", "/_sandbox/platforms", {"api_key": api_key, "balances": balances or {}})["id"]

    def admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """Call an admin endpoint (``/_sandbox/...``) and return its JSON; raises on non-2xx."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            raise RuntimeError(
                f"sandbox admin {method} {path} -> {exc.code}: {exc.read().decode(errors='replace')}"
            ) from None

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def run_sandbox(
    host: str = "127.0.0.1",
    port: int = 12111,
    state_path: str | None = None,
    latency_ms: int = 0,
    rate_limit: float | None = None,
    balances: dict[str, int] | None = None,
    clock_offset_seconds: int = 0,
    api_keys: list[str] | None = None,
    platforms: dict[str, dict[str, int]] | None = None,
) -> None:
    """Serve in the foreground until Ctrl-C (what ``python -m sorae_sandbox`` runs)."""
    server = SandboxServer(
        host,
        port,
        state_path,
        latency_ms,
        rate_limit,
        balances,
        clock_offset_seconds,
        api_keys=api_keys,
        platforms=platforms,
    ).start()
    # Stripe's edge notes a request when it arrives; a GC pause here would note several at once. Once
    # per process, after a full collection (the engine's run workers do the same: core/heap.py).
    gc.collect()
    gc.freeze()
    print(f"Stripe sandbox listening on {server.url} (state: {state_path or 'temporary'})", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
