"""The attack suite's system under test: the four services in this process, as `tierline run`
builds them (memory bus, SQLite files, `.eml` outbox), behind the embedded mode's one WSGI
dispatcher, driven through Werkzeug's test client. A local HTTP receiver stands in for the
developers' tracker. Built once per test module (see conftest.py).
"""
from __future__ import annotations

import email
import email.policy
import importlib
import json
import time
import uuid
from pathlib import Path

import yaml
from werkzeug.test import Client

from services.escalation.trackers import sign_delivery
from shared.auth import TokenStore
from shared.bus import connect
from shared.config import DEFAULTS_FILE, load_settings
from shared.host import Dispatcher
from shared.topology import TOPOLOGY
from tests.helpers import wait_for
from tests.servers import HttpReceiver

SERVICES = ("intake", "sla", "escalation", "notify")
TRACKER_SECRET = "attack-suite-tracker-secret"
WEBHOOK = "/api/v1/escalation/trackers/default/webhook"

# name: (role, email, tier, groups)
PEOPLE = {
    "reporter": ("reporter", "kate@example.com", None, []),
    "reporter2": ("reporter", "mallory@example.com", None, []),
    "agent1": ("agent", "ivan.petrov@example.com", "L1", ["Service Desk"]),
    "agent2": ("agent", "dmitry.volkov@example.com", "L2", ["Infrastructure"]),
    "agent3": ("agent", "elena.sokolova@example.com", "L3", ["Platform Engineering"]),
    "lead": ("lead", "olga@example.com", None, []),
    "admin": ("admin", "admin@example.com", None, []),
}


def config_with(path: Path, **sections) -> Path:
    """The shipped defaults with some top-level sections replaced or added (e.g. trackers)."""
    doc = yaml.safe_load(DEFAULTS_FILE.read_text(encoding="utf-8"))
    doc.update(sections)
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


class Tierline:
    def __init__(self, workdir: Path, **overrides):
        self.workdir = workdir
        self.tracker = HttpReceiver(secret=TRACKER_SECRET).start()
        base = dict(var_dir=str(workdir / "var"), relay_interval=0.05, sla_tick_seconds=0.2,
                    notify_retry_seconds=0.2, log_json=False, tracker_url=self.tracker.url("/tracker/issues"),
                    tracker_secret=TRACKER_SECRET, tracker_kind="webhook")
        base.update(overrides)
        self.settings = load_settings(env={}, **base)
        self.bus = connect("memory://", prefix=f"a{uuid.uuid4().hex[:10]}.")
        self.bus.declare(TOPOLOGY)
        self.services = [importlib.import_module(f"services.{name}.bootstrap").build(self.settings, bus=self.bus)
                         for name in SERVICES]
        self.by_name = {svc.name: svc for svc in self.services}
        self.app = Dispatcher(self.services)
        store = TokenStore(self.settings.tokens_path())
        self.tokens = {}
        self.people = {}
        for name, (role, mail, tier, groups) in PEOPLE.items():
            secret = store.add(name=name, role=role, email=mail, tier=tier, groups=groups)
            self.tokens[name] = {"Authorization": f"Bearer {secret}"}
            self.people[name] = mail
        self.tokens[None] = {}
        self.client = Client(self.app)
        for svc in self.services:
            svc.start_background()
        self.bus.start()

    def stop(self) -> None:
        self.bus.stop()
        for svc in self.services:
            svc.stop_background()
            svc.db.dispose()
        self.bus.delete_topology(TOPOLOGY)
        self.tracker.stop()

    # --- HTTP --------------------------------------------------------------------------------
    def call(self, method: str, path: str, who: str | None = "admin", *, headers: dict | None = None,
             json_body=None, data=None, **kwargs):
        """One request through the dispatcher; `json_body` is sent as JSON, `data` as raw bytes."""
        all_headers = {**self.tokens[who], **(headers or {})}
        if json_body is not None:
            data = json.dumps(json_body)
            all_headers.setdefault("Content-Type", "application/json")
        return self.client.open(path, method=method, headers=all_headers, data=data, **kwargs)

    def create_ticket(self, who: str = "reporter", **fields):
        body = {"title": "Printer on fire", "description": "third floor", "category": "hardware",
                "service": "printing", "impact": "medium", "urgency": "medium", **fields}
        resp = self.call("POST", "/api/v1/tickets", who, json_body=body)
        assert resp.status_code == 201, resp.get_data(as_text=True)
        return resp.get_json()

    def ticket(self, ref: str, who: str = "admin") -> dict:
        resp = self.call("GET", f"/api/v1/tickets/{ref}", who)
        assert resp.status_code == 200, resp.get_data(as_text=True)
        return resp.get_json()

    def wait_ticket(self, ref: str, predicate, what: str, timeout: float = 15) -> dict:
        found = wait_for(lambda: (lambda t: t if predicate(t) else None)(self.ticket(ref)), timeout, 0.05)
        assert found, f"ticket {ref} never reached: {what}; now {self.ticket(ref)}"
        return found

    def routed(self, who: str = "reporter", **fields) -> dict:
        """A ticket created and routed to its L1 group."""
        created = self.create_ticket(who, **fields)
        return self.wait_ticket(created["id"], lambda t: t["tier"] is not None, "routed")

    def wait_sla(self, ticket_id: str, timeout: float = 15) -> dict:
        def check():
            resp = self.call("GET", f"/api/v1/sla/tickets/{ticket_id}", "admin")
            return resp.get_json() if resp.status_code == 200 else None
        found = wait_for(check, timeout, 0.05)
        assert found, f"sla never saw {ticket_id}"
        return found

    def wait_escalation(self, ticket_id: str, timeout: float = 15) -> dict:
        def check():
            resp = self.call("GET", f"/api/v1/escalation/tickets/{ticket_id}", "admin")
            return resp.get_json() if resp.status_code == 200 else None
        found = wait_for(check, timeout, 0.05)
        assert found, f"escalation never saw {ticket_id}"
        return found

    def deliveries(self, **filters) -> list[dict]:
        query = "&".join(f"{k}={v}" for k, v in filters.items())
        resp = self.call("GET", f"/api/v1/notify/deliveries?limit=200&{query}", "admin")
        assert resp.status_code == 200, resp.get_data(as_text=True)
        return resp.get_json()["items"]

    def wait_deliveries(self, count: int = 1, timeout: float = 15, sent: bool = True, **filters) -> list[dict]:
        def check():
            found = [d for d in self.deliveries(**filters) if not sent or d["status"] == "sent"]
            return found if len(found) >= count else None
        found = wait_for(check, timeout, 0.05)
        assert found, f"no {count} deliveries {filters}; have {self.deliveries(**filters)}"
        return found

    # --- mail ----------------------------------------------------------------------------------
    def mails(self) -> list[tuple[Path, bytes]]:
        outbox = self.settings.outbox_dir()
        return [(p, p.read_bytes()) for p in sorted(outbox.glob("*.eml"))] if outbox.exists() else []

    def mail_of(self, delivery_id: str):
        path = self.settings.outbox_dir() / f"{delivery_id}.eml"
        found = wait_for(path.exists, 10, 0.05)
        assert found, f"no {path}"
        raw = path.read_bytes()
        return raw, email.message_from_bytes(raw, policy=email.policy.default)

    # --- tracker -------------------------------------------------------------------------------
    def webhook(self, body: dict | bytes, *, stamp: int | str | None = None, secret: str = TRACKER_SECRET,
                signature: str | None = None, headers: dict | None = None, tracker: str = "default"):
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        stamp = str(int(time.time()) if stamp is None else stamp)
        sig = sign_delivery(secret, stamp, raw) if signature is None else signature
        hdrs = {"Content-Type": "application/json", "X-Tierline-Timestamp": stamp, "X-Tierline-Signature": sig}
        hdrs.update(headers or {})
        hdrs = {k: v for k, v in hdrs.items() if v is not None}
        return self.client.open(WEBHOOK.replace("/default/", f"/{tracker}/"), method="POST", headers=hdrs, data=raw)
