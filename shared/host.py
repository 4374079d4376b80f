"""Runs one or more services in this process: one HTTP port, one bus, graceful shutdown.

Production runs one service per process (`tierline serve intake`); the embedded mode runs all
four (`tierline run`) on one port, each app under its own path prefix.
"""
from __future__ import annotations

import json
import logging
import signal
import threading
import time
from typing import Iterable

from waitress.server import create_server

from shared.bus import Bus
from shared.outbox import pending
from shared.service import Service
from shared.topology import TOPOLOGY

log = logging.getLogger(__name__)
ROOT_PATHS = ("/healthz", "/readyz", "/metrics")


class Dispatcher:
    """WSGI app sending each request to the service whose prefix matches the path."""

    def __init__(self, services: Iterable[Service]):
        self.services = list(services)
        self.routes: list[tuple[str, object]] = []
        for svc in self.services:
            for prefix in svc.extras.get("prefixes", ()):
                self.routes.append((prefix, svc.app))
        self.routes.sort(key=lambda r: -len(r[0]))

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if len(self.services) > 1 and path == "/metrics":
            # Token required, as on every service (any app serves the one process-wide registry).
            return self.services[0].app(environ, start_response)
        if len(self.services) > 1 and path in ROOT_PATHS:
            return self._root(path, start_response)
        for prefix, app in self.routes:
            if path == prefix or path.startswith(prefix + "/"):
                return app(environ, start_response)
        if len(self.services) == 1:
            return self.services[0].app(environ, start_response)
        body = json.dumps({"error": {"code": "not_found", "message": f"no service at {path}", "fields": {}}}).encode()
        start_response("404 Not Found", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    def _root(self, path: str, start_response):
        checks = {s.name: (s.ready() if path == "/readyz" else {"alive": True}) for s in self.services}
        ok = all(all(c.values()) for c in checks.values())
        body = json.dumps({"status": "ok" if ok else "unavailable", "services": checks}).encode()
        start_response("200 OK" if ok else "503 Service Unavailable",
                       [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]


class Host:
    def __init__(self, services: list[Service], bus: Bus, *, host: str, port: int, threads: int = 8):
        self.services, self.bus = services, bus
        self.server = create_server(Dispatcher(services), host=host, port=port, threads=threads,
                                    max_request_body_size=max(s.settings.max_body_bytes for s in services) + 1024,
                                    ident="tierline")
        self._stopped = threading.Event()

    @property
    def port(self) -> int:
        return self.server.effective_port

    def start_background(self) -> None:
        self.bus.declare(TOPOLOGY)
        for svc in self.services:
            svc.start_background()
        self.bus.start()

    def serve_forever(self) -> None:
        """Start everything, serve until SIGINT/SIGTERM, then stop gracefully."""
        self.start_background()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)
        log.info("listening on http://%s:%s", self.server.effective_host, self.port)
        try:
            self.server.run()
        except (KeyboardInterrupt, SystemExit):
            pass
        finally:
            self.shutdown()

    def _drain(self, timeout: float = 15.0) -> None:
        """Embedded mode: the in-memory bus dies with the process, so let every outbox and queue
        empty before stopping (RabbitMQ's queues are durable and need no such wait)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            busy = any(pending(s.db) for s in self.services) or any(self.bus.depth(q) for q in TOPOLOGY.queues)
            if not busy:
                return
            time.sleep(0.1)
        log.warning("stopping with work still queued in memory after %.0fs", timeout)

    def _on_signal(self, signum, _frame):
        log.info("signal %s: shutting down", signum)
        raise SystemExit(0)

    def shutdown(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.server.close()  # no new requests
        if self.bus.url.startswith("memory://"):
            self._drain()
        # Stop taking work, let in-flight handlers finish, then flush the outboxes.
        self.bus.stop()
        for svc in self.services:
            svc.stop_background()
        for svc in self.services:
            svc.db.dispose()
        log.info("stopped")
