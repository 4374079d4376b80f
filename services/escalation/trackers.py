"""Developers' trackers: configuration, the two adapters (generic webhook, GitLab issues), and
the HMAC signatures of both directions.

Secrets (webhook secrets, API tokens) live only in the Tracker objects built from the config;
their repr, the API and every error message leave them out.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from shared.config import ConfigError, Settings

KINDS = ("webhook", "gitlab")
SIGNATURE_HEADER = "X-Tierline-Signature"
TIMESTAMP_HEADER = "X-Tierline-Timestamp"
MAX_SKEW_SECONDS = 300


class TrackerError(Exception):
    """The tracker did not take the defect (down, refused, answered nonsense): retry later."""


class SignatureError(Exception):
    """A webhook delivery that is not provably from the tracker: 401."""


@dataclass(frozen=True)
class Tracker:
    name: str
    kind: str = "webhook"
    url: str = ""
    project: str | None = None
    labels: tuple[str, ...] = ()
    timeout: float = 10.0
    secret: str = field(default="", repr=False)
    token: str = field(default="", repr=False)

    @property
    def configured(self) -> bool:
        return bool(self.url) and (self.kind != "gitlab" or bool(self.token))

    @property
    def public_url(self) -> str | None:
        """The URL without user info or query (either may carry credentials)."""
        if not self.url:
            return None
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        return urlunsplit((parts.scheme, host, parts.path, "", ""))

    def scrub(self, text: str) -> str:
        """Remove the URL's credentials and the secrets from a message before it is stored/logged."""
        for value in (self.url, self.secret, self.token):
            if value:
                text = text.replace(value, self.public_url if value == self.url else "***")
        return text


def load_trackers(settings: Settings, environ=os.environ) -> dict[str, Tracker]:
    """`trackers:` of the config file, plus "default" from TIERLINE_TRACKER_* when not listed.

    An entry may name environment variables for its secrets (secret_env, token_env) so the
    YAML file itself holds none.
    """
    trackers: dict[str, Tracker] = {}
    for index, raw in enumerate(settings.domain.get("trackers") or []):
        where = f"trackers[{index}]"
        if not isinstance(raw, dict) or not raw.get("name"):
            raise ConfigError(f"{where}: needs a name")
        kind = raw.get("kind", "webhook")
        if kind not in KINDS:
            raise ConfigError(f"{where}.kind: must be one of {', '.join(KINDS)}, got {kind!r}")
        url = str(raw.get("url") or "")
        if url and not url.startswith(("http://", "https://")):
            raise ConfigError(f"{where}.url: expected an http:// or https:// URL")
        trackers[raw["name"]] = Tracker(
            name=raw["name"], kind=kind, url=url, project=raw.get("project"),
            labels=tuple(raw.get("labels") or ()), timeout=float(raw.get("timeout", 10.0)),
            secret=str(raw.get("secret") or environ.get(raw.get("secret_env") or "", "") or ""),
            token=str(raw.get("token") or environ.get(raw.get("token_env") or "", "") or ""))
    if "default" not in trackers:
        kind = settings.tracker_kind if settings.tracker_kind in KINDS else "webhook"
        trackers["default"] = Tracker(name="default", kind=kind, url=settings.tracker_url,
                                      secret=settings.tracker_secret, token=settings.tracker_token)
    return trackers


# --- signatures -----------------------------------------------------------------------------
def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def sign_delivery(secret: str, timestamp: str, body: bytes) -> str:
    """Incoming webhooks sign `<timestamp>.<raw body>`, so an old delivery cannot be replayed
    with a fresh timestamp."""
    return sign(secret, timestamp.encode() + b"." + body)


def verify_delivery(secret: str, signature: str | None, timestamp: str | None, body: bytes, now: float) -> None:
    if not secret:
        raise SignatureError("this tracker has no webhook secret configured")
    if not signature or not timestamp:
        raise SignatureError(f"missing {SIGNATURE_HEADER} or {TIMESTAMP_HEADER}")
    try:
        sent = float(timestamp)
    except ValueError:
        raise SignatureError(f"{TIMESTAMP_HEADER} is not a Unix time") from None
    if not math.isfinite(sent) or abs(now - sent) > MAX_SKEW_SECONDS:  # "nan" would pass the comparison
        raise SignatureError(f"{TIMESTAMP_HEADER} is more than {MAX_SKEW_SECONDS} seconds away from now")
    # Bytes: compare_digest raises TypeError (a 500) on str with non-ASCII characters.
    if not hmac.compare_digest(signature.strip().lower().encode(), sign_delivery(secret, timestamp, body).encode()):
        raise SignatureError("signature does not match")


def verify_gitlab_token(secret: str, token: str | None) -> None:
    if not secret or not token or not hmac.compare_digest(token.encode(), secret.encode()):
        raise SignatureError("X-Gitlab-Token does not match")


# --- adapters -------------------------------------------------------------------------------
def create_defect(tracker: Tracker, request: dict, *, attempt: int, http: Any) -> tuple[str, str | None]:
    """Create the defect; returns (defect id, url). `http` is a requests.Session (or a fake)."""
    if not tracker.configured:
        raise TrackerError(f"tracker {tracker.name!r} is not configured (no URL{' or token' if tracker.kind == 'gitlab' else ''})")
    try:
        if tracker.kind == "gitlab":
            return _gitlab_create(tracker, request, attempt, http)
        return _webhook_create(tracker, request, http)
    except TrackerError as exc:
        raise TrackerError(tracker.scrub(str(exc))) from None
    except Exception as exc:  # network errors, bad JSON: all mean "try again later"
        raise TrackerError(tracker.scrub(f"{type(exc).__name__}: {exc}")[:500]) from None


def _webhook_create(tracker: Tracker, request: dict, http) -> tuple[str, str | None]:
    body = json.dumps(request, ensure_ascii=False, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", "Idempotency-Key": request["idempotency_key"],
               "User-Agent": "tierline-escalation"}
    if tracker.secret:
        headers[SIGNATURE_HEADER] = sign(tracker.secret, body)
    response = http.post(tracker.url, data=body, headers=headers, timeout=tracker.timeout)
    data = _json_answer(response)
    if data.get("id") in (None, ""):
        raise TrackerError("tracker answered without an id")
    return str(data["id"]), data.get("url")


def gitlab_api(tracker: Tracker) -> str:
    """`url` is either the GitLab base URL (with `project`) or the project's own web URL."""
    if tracker.project:
        base, project = tracker.url.rstrip("/"), tracker.project
    else:
        parts = urlsplit(tracker.url)
        base = urlunsplit((parts.scheme, parts.netloc, "", "", ""))
        project = parts.path.strip("/")
    return f"{base}/api/v4/projects/{quote(str(project), safe='')}/issues"


def _gitlab_create(tracker: Tracker, request: dict, attempt: int, http) -> tuple[str, str | None]:
    api = gitlab_api(tracker)
    headers = {"PRIVATE-TOKEN": tracker.token, "Idempotency-Key": request["idempotency_key"],
               "User-Agent": "tierline-escalation"}
    if attempt > 1:
        # GitLab ignores Idempotency-Key: before creating again after a failed attempt, look for
        # the issue that attempt may have created (its description carries the key).
        found = _json_answer(http.get(api, params={"search": request["idempotency_key"], "in": "description"},
                                      headers=headers, timeout=tracker.timeout))
        for issue in found if isinstance(found, list) else []:
            if request["idempotency_key"] in (issue.get("description") or ""):
                return str(issue["iid"]), issue.get("web_url")
    ticket = request["ticket"]
    labels = [*tracker.labels, f"priority::{ticket['priority']}", "tierline"]
    response = http.post(api, json={"title": f"[{ticket['key']}] {ticket['title']}"[:255],
                                    "description": gitlab_description(request), "labels": ",".join(labels)},
                         headers=headers, timeout=tracker.timeout)
    data = _json_answer(response)
    if data.get("iid") in (None, ""):
        raise TrackerError("GitLab answered without an iid")
    return str(data["iid"]), data.get("web_url")


def gitlab_description(request: dict) -> str:
    ticket = request["ticket"]
    lines = [request["summary"], "", f"**Priority:** {ticket['priority']}  ",
             f"**Ticket:** [{ticket['key']}]({request['link']})", ""]
    if request.get("description"):
        lines += ["### Description", "", request["description"], ""]
    if request.get("history"):
        lines += ["### Escalation history", "", *[f"- {line}" for line in request["history"]], ""]
    lines.append(f"<!-- Tierline-Idempotency-Key: {request['idempotency_key']} -->")
    return "\n".join(lines)


def _json_answer(response) -> Any:
    if not 200 <= response.status_code < 300:
        raise TrackerError(f"HTTP {response.status_code}: {(response.text or '')[:300]}")
    try:
        return response.json()
    except ValueError:
        raise TrackerError(f"HTTP {response.status_code} without a JSON body") from None
