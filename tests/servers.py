"""Real local stand-ins for the outside world: an SMTP server (aiosmtpd) and an HTTP receiver
playing chat and tracker endpoints. Both listen on 127.0.0.1 sockets."""
from __future__ import annotations

import email
import email.policy
import hashlib
import hmac
import json
import random
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from aiosmtpd.controller import Controller


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A free port below the kernel's ephemeral range. A port the kernel hands out (bind to 0)
    can be taken again, between this check and the service binding it, as the local end of
    any outgoing connection (a database or broker client); seen as 'Address already in use'."""
    high = _ephemeral_low() - 1
    for _ in range(500):
        port = random.randint(max(1024, high - 12000), high)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


class SmtpSink:
    """aiosmtpd on a free port; keeps every accepted message. `refuse = True` answers 451."""

    def __init__(self):
        self.messages: list[email.message.EmailMessage] = []
        self.refuse = False
        self.lock = threading.Lock()
        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server, session, envelope):
        if self.refuse:
            return "451 4.3.0 try again later"
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        msg["X-Envelope-To"] = ",".join(envelope.rcpt_tos)
        with self.lock:
            self.messages.append(msg)
        return "250 OK"

    def start(self) -> "SmtpSink":
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def to(self, address: str) -> list:
        with self.lock:
            return [m for m in self.messages if address in m["X-Envelope-To"]]

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"


class HttpReceiver:
    """Records JSON POSTs. A tracker create (`/tracker...`) answers {"id", "url"}; `fail_next`
    makes the next N requests answer 500."""

    def __init__(self, secret: str = ""):
        self.requests: list[dict] = []
        self.fail_next = 0
        self.secret = secret
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    failing = receiver.fail_next > 0
                    if failing:
                        receiver.fail_next -= 1
                    try:
                        body = json.loads(raw or b"{}")
                    except ValueError:
                        body = {"_raw": raw.decode("utf-8", "replace")}
                    receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body,
                                              "raw": raw, "failed": failing})
                    number = len([r for r in receiver.requests if not r["failed"]])
                if failing:
                    self.send_response(500)
                    self.end_headers()
                    return
                answer = {"ok": True}
                if self.path.startswith("/tracker"):
                    answer = {"id": f"BUG-{number}", "url": f"http://tracker.local/BUG-{number}"}
                data = json.dumps(answer).encode()
                self.send_response(201 if self.path.startswith("/tracker") else 200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> "HttpReceiver":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def received(self, path_prefix: str) -> list[dict]:
        with self.lock:
            return [r for r in self.requests if r["path"].startswith(path_prefix) and not r["failed"]]

    def valid_signature(self, request: dict) -> bool:
        expected = "sha256=" + hmac.new(self.secret.encode(), request["raw"], hashlib.sha256).hexdigest()
        return hmac.compare_digest(request["headers"].get("X-Tierline-Signature", ""), expected)
