"""`tierline demo`: plays a realistic day against a running Tierline in about a minute.

It adds two demo SLA policies in seconds that apply only to category "demo" (so real tickets
keep the real policies), then plays: a P1 outage raised by monitoring that breaches and climbs
L1 -> L2 -> L3 -> developers; a P3 question answered at L1; a ticket waiting for the customer
(its clocks paused); a reopened ticket. Each step is printed as it happens, then the KPI report.
"""
from __future__ import annotations

import json
import os
import sys
import time

import requests

DEMO_POLICIES = [
    {"name": "Demo P1 (seconds)", "position": 0, "match": {"priority": "P1", "category": "demo"},
     "calendar": "24x7", "first_response": 600, "resolution": 3600, "warnings": [50],
     "ola": {"L1": 6, "L2": 6, "L3": 6, "DEV": 600}},
    {"name": "Demo P3 (seconds)", "position": 1, "match": {"priority": "P3", "category": "demo"},
     "calendar": "24x7", "first_response": 40, "resolution": 120, "warnings": [50, 75],
     "ola": {"L1": 120}},
]


class Demo:
    def __init__(self, url: str, token: str):
        self.url = url.rstrip("/")
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"
        self.started = time.monotonic()

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:5.1f}s] {text}", flush=True)

    def call(self, method: str, path: str, **kwargs) -> dict:
        resp = self.session.request(method, self.url + path, timeout=15, **kwargs)
        if resp.status_code >= 400:
            raise SystemExit(f"demo: {method} {path} -> {resp.status_code} {resp.text[:300]}")
        return resp.json() if resp.content else {}

    def ensure_policies(self) -> None:
        listing = self.call("GET", "/api/v1/sla/policies")
        existing = {p["name"] for p in (listing if isinstance(listing, list) else listing.get("items", []))}
        for policy in DEMO_POLICIES:
            if policy["name"] not in existing:
                self.call("POST", "/api/v1/sla/policies", json=policy)
        self.say("demo SLA policies in seconds are in place (category 'demo' only)")

    def ticket(self, ref: str) -> dict:
        return self.call("GET", f"/api/v1/tickets/{ref}")

    def wait(self, ref: str, predicate, timeout: float = 40, label: str = "") -> dict:
        deadline = time.monotonic() + timeout
        while True:
            t = self.ticket(ref)
            if predicate(t):
                return t
            if time.monotonic() > deadline:
                raise SystemExit(f"demo: {ref} did not reach '{label}' in {timeout:.0f}s (now {t['status']} at "
                                 f"{t['tier']}/{t['group']})")
            time.sleep(0.3)

    def create(self, **body) -> dict:
        t = self.call("POST", "/api/v1/tickets", json={"category": "demo", **body})
        self.say(f"{t['key']} created from {body.get('channel', 'web')}: \"{body['title']}\" -> {t['priority']}")
        return t

    def status(self, ref: str, status: str, reason: str = "") -> None:
        self.call("POST", f"/api/v1/tickets/{ref}/status", json={"status": status, "reason": reason})

    def clocks(self, ticket_id: str) -> str:
        data = self.call("GET", f"/api/v1/sla/tickets/{ticket_id}")
        return ", ".join(f"{c['name']}={c['state']}" for c in data.get("clocks", []))

    # --- the day -------------------------------------------------------------------------------
    def outage(self) -> None:
        self.say("== 1. A P1 outage from monitoring climbs the ladder ==")
        t = self.create(title="VPN gateway down for all offices", channel="monitoring", impact="high",
                        urgency="high", service="vpn", dedup_key="demo-vpn-gw-down",
                        description="Alert: vpn-gw-01 health check failing", reporter={
                            "name": "Monitoring", "email": "monitoring@example.com"})
        again = self.call("POST", "/api/v1/tickets", json={
            "title": "VPN gateway down for all offices", "channel": "monitoring", "impact": "high",
            "urgency": "high", "category": "demo", "service": "vpn", "dedup_key": "demo-vpn-gw-down",
            "reporter": {"name": "Monitoring", "email": "monitoring@example.com"}})
        self.say(f"the same alert again is folded into {again['key']} (occurrences: {again.get('occurrences')})")
        seen_tier = None
        for tier in ("L1", "L2", "L3", "DEV"):
            current = self.wait(t["id"], lambda x, tier=tier: x["tier"] == tier, label=f"tier {tier}")
            if current["tier"] != seen_tier:
                seen_tier = current["tier"]
                why = "routed" if tier == "L1" else "OLA breached, escalated"
                self.say(f"{t['key']} {why} -> {tier} / {current['group']} (breached clocks: "
                         f"{', '.join(current.get('breached_clocks') or []) or 'none'})")
        deadline = time.monotonic() + 10
        while not (current := self.ticket(t["id"])).get("defects") and time.monotonic() < deadline:
            time.sleep(0.3)
        if current.get("defects"):
            defect = current["defects"][0]
            self.say(f"{t['key']} defect {defect['defect_id']} opened in tracker '{defect['tracker']}'")
        else:
            self.say(f"{t['key']} is with the developers; its defect waits for a tracker "
                     "(set TIERLINE_TRACKER_URL to create it)")

    def question(self) -> None:
        self.say("== 2. A P3 question answered at L1 ==")
        t = self.create(title="How do I share a calendar?", impact="low", urgency="high", channel="email",
                        reporter={"name": "Kate", "email": "kate@example.com"})
        self.wait(t["id"], lambda x: x["tier"] == "L1", label="routed")
        self.call("POST", f"/api/v1/tickets/{t['id']}/comments",
                  json={"body": "Open Calendar > Share, then add your colleague.", "public": True})
        self.status(t["id"], "in_progress")
        self.status(t["id"], "resolved", "answered")
        self.say(f"{t['key']} answered and resolved at L1 (clocks: {self.clocks(t['id'])})")

    def waiting(self) -> None:
        self.say("== 3. Waiting for the customer pauses the clocks ==")
        t = self.create(title="Laptop will not charge", impact="medium", urgency="medium",
                        reporter={"name": "Boris", "email": "boris@example.com"})
        self.wait(t["id"], lambda x: x["tier"] == "L1", label="routed")
        self.status(t["id"], "in_progress")
        self.status(t["id"], "pending", "asked the customer for the serial number")
        time.sleep(1.0)
        self.say(f"{t['key']} pending: {self.clocks(t['id'])}")
        self.status(t["id"], "in_progress", "customer replied")
        time.sleep(1.0)
        self.say(f"{t['key']} back in progress: {self.clocks(t['id'])}")

    def reopened(self) -> None:
        self.say("== 4. A resolved ticket is reopened ==")
        t = self.create(title="Printer on 3rd floor jams", impact="medium", urgency="low",
                        reporter={"name": "Dina", "email": "dina@example.com"})
        self.wait(t["id"], lambda x: x["tier"] == "L1", label="routed")
        self.status(t["id"], "in_progress")
        self.status(t["id"], "resolved", "replaced the roller")
        self.status(t["id"], "reopened", "jams again")
        time.sleep(1.0)
        self.say(f"{t['key']} reopened; the resolution clock goes on with its elapsed time: {self.clocks(t['id'])}")

    def report(self) -> None:
        kpi = self.call("GET", "/api/v1/reports/kpi")
        self.say("== KPI report ==")
        print(json.dumps(kpi, indent=2, ensure_ascii=False))


def play(url: str, token: str | None) -> int:
    token = token or os.environ.get("TIERLINE_TOKEN")
    if not token:
        print("demo: give an admin token with --token or TIERLINE_TOKEN", file=sys.stderr)
        return 2
    demo = Demo(url, token)
    try:
        demo.call("GET", "/api/v1/sla/policies")
    except requests.RequestException as exc:
        print(f"demo: no Tierline at {url}: {exc}", file=sys.stderr)
        return 2
    demo.ensure_policies()
    demo.outage()
    demo.question()
    demo.waiting()
    demo.reopened()
    demo.report()
    return 0
