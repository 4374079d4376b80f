"""Tracker adapters, signatures and retry policy, with a fake HTTP client (no I/O)."""
from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json

import pytest

from services.escalation import trackers
from services.escalation.trackers import SignatureError, Tracker, TrackerError
from services.escalation.worker import RetryPolicy
from shared.config import ConfigError, load_settings

REQUEST = {"idempotency_key": "job-1", "ticket": {"id": "t1", "key": "INC-7", "title": "CRM crashes",
                                                  "priority": "P2", "url": "http://x/api/v1/tickets/t1"},
           "summary": "INC-7: CRM crashes", "description": "Stack trace...", "reason": "needs a code fix",
           "escalated_by": "Elena", "history": ["L1 -> L2", "L2 -> L3"], "link": "http://x/api/v1/tickets/t1"}


class Response:
    def __init__(self, status: int, body=None, text: str | None = None):
        self.status_code, self._body = status, body
        self.text = text if text is not None else json.dumps(body)

    def json(self):
        if self._body is None:
            raise ValueError("no JSON")
        return self._body


class FakeHttp:
    def __init__(self, *responses):
        self.responses = list(responses)
        self.calls = []

    def _next(self, method, url, kwargs):
        self.calls.append((method, url, kwargs))
        answer = self.responses.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def post(self, url, **kwargs):
        return self._next("POST", url, kwargs)

    def get(self, url, **kwargs):
        return self._next("GET", url, kwargs)


# --- signatures -----------------------------------------------------------------------------
def test_outgoing_signature_is_hmac_sha256_of_the_body():
    expected = hmac.new(b"k", b'{"a":1}', hashlib.sha256).hexdigest()
    assert trackers.sign("k", b'{"a":1}') == f"sha256={expected}"


def test_incoming_delivery_verifies_timestamp_and_body():
    body = b'{"defect_id":"1","status":"fixed"}'
    good = trackers.sign_delivery("s3", "1000", body)
    trackers.verify_delivery("s3", good, "1000", body, now=1100)
    with pytest.raises(SignatureError, match="does not match"):
        trackers.verify_delivery("s3", good, "1000", body + b" ", now=1100)
    with pytest.raises(SignatureError, match="does not match"):
        trackers.verify_delivery("other", good, "1000", body, now=1100)
    with pytest.raises(SignatureError, match="does not match"):  # the timestamp is signed too
        trackers.verify_delivery("s3", good, "1001", body, now=1100)
    with pytest.raises(SignatureError, match="seconds away"):
        trackers.verify_delivery("s3", good, "1000", body, now=1000 + 301)
    with pytest.raises(SignatureError, match="missing"):
        trackers.verify_delivery("s3", None, "1000", body, now=1000)
    with pytest.raises(SignatureError, match="Unix time"):
        trackers.verify_delivery("s3", good, "yesterday", body, now=1000)
    with pytest.raises(SignatureError, match="no webhook secret"):
        trackers.verify_delivery("", good, "1000", body, now=1000)


def test_gitlab_token_check():
    trackers.verify_gitlab_token("tok", "tok")
    for wrong in (None, "", "tok2"):
        with pytest.raises(SignatureError):
            trackers.verify_gitlab_token("tok", wrong)


# --- configuration --------------------------------------------------------------------------
def test_default_tracker_comes_from_settings_and_hides_secrets():
    settings = load_settings(env={}, tracker_url="https://bugs.example.com/hook", tracker_secret="hush")
    found = trackers.load_trackers(settings, environ={})
    assert found["default"].url == "https://bugs.example.com/hook" and found["default"].secret == "hush"
    assert "hush" not in repr(found["default"])
    assert not trackers.load_trackers(load_settings(env={}), environ={})["default"].configured


def test_configured_trackers_read_secrets_from_the_environment():
    settings = load_settings(env={})
    settings = dataclasses.replace(settings, domain={**settings.domain, "trackers": [
        {"name": "gitlab", "kind": "gitlab", "url": "https://user:pw@gitlab.example.com/team/app?x=1",
         "token_env": "GL_TOKEN", "secret_env": "GL_HOOK"}]})
    found = trackers.load_trackers(settings, environ={"GL_TOKEN": "glpat-1", "GL_HOOK": "hook"})
    assert set(found) == {"gitlab", "default"}
    assert found["gitlab"].token == "glpat-1" and found["gitlab"].secret == "hook"
    assert found["gitlab"].public_url == "https://gitlab.example.com/team/app"


@pytest.mark.parametrize("entry, message", [
    ({"name": "x", "kind": "jira"}, "kind"), ({"kind": "webhook"}, "name"), ({"name": "x", "url": "ftp://a"}, "url")])
def test_bad_tracker_config_names_the_setting(entry, message):
    settings = load_settings(env={})
    settings = dataclasses.replace(settings, domain={**settings.domain, "trackers": [entry]})
    with pytest.raises(ConfigError, match=rf"trackers\[0\].*{message}"):
        trackers.load_trackers(settings, environ={})


# --- adapters -------------------------------------------------------------------------------
def test_webhook_adapter_posts_signed_json_with_the_idempotency_key():
    http = FakeHttp(Response(201, {"id": 42, "url": "https://bugs/42"}))
    tracker = Tracker(name="t", url="https://bugs.example.com/hook", secret="s3")
    assert trackers.create_defect(tracker, REQUEST, attempt=1, http=http) == ("42", "https://bugs/42")
    method, url, kwargs = http.calls[0]
    assert (method, url) == ("POST", "https://bugs.example.com/hook")
    assert json.loads(kwargs["data"]) == REQUEST
    assert kwargs["headers"]["Idempotency-Key"] == "job-1"
    assert kwargs["headers"]["X-Tierline-Signature"] == trackers.sign("s3", kwargs["data"])


@pytest.mark.parametrize("answer", [Response(500, text="boom"), Response(200, {"url": "no id"}),
                                    Response(200, None, text="<html>"), ConnectionError("refused")])
def test_webhook_adapter_failures_are_tracker_errors(answer):
    with pytest.raises(TrackerError):
        trackers.create_defect(Tracker(name="t", url="https://bugs/hook"), REQUEST, attempt=1, http=FakeHttp(answer))


def test_errors_never_carry_credentials():
    tracker = Tracker(name="t", url="https://user:pw@bugs.example.com/hook", secret="s3cr3t")
    http = FakeHttp(ConnectionError("cannot reach https://user:pw@bugs.example.com/hook with s3cr3t"))
    with pytest.raises(TrackerError) as caught:
        trackers.create_defect(tracker, REQUEST, attempt=1, http=http)
    assert "pw" not in str(caught.value) and "s3cr3t" not in str(caught.value)
    assert "https://bugs.example.com/hook" in str(caught.value)


def test_unconfigured_tracker_fails_without_a_call():
    http = FakeHttp()
    with pytest.raises(TrackerError, match="not configured"):
        trackers.create_defect(Tracker(name="default"), REQUEST, attempt=1, http=http)
    assert http.calls == []


def test_gitlab_adapter_creates_an_issue():
    tracker = Tracker(name="gl", kind="gitlab", url="https://gitlab.example.com/", project="team/app",
                      token="glpat", labels=("support",))
    http = FakeHttp(Response(201, {"iid": 17, "web_url": "https://gitlab.example.com/team/app/-/issues/17"}))
    assert trackers.create_defect(tracker, REQUEST, attempt=1, http=http) == (
        "17", "https://gitlab.example.com/team/app/-/issues/17")
    method, url, kwargs = http.calls[0]
    assert url == "https://gitlab.example.com/api/v4/projects/team%2Fapp/issues"
    assert kwargs["headers"]["PRIVATE-TOKEN"] == "glpat"
    assert kwargs["json"]["title"] == "[INC-7] CRM crashes"
    assert kwargs["json"]["labels"] == "support,priority::P2,tierline"
    assert "Tierline-Idempotency-Key: job-1" in kwargs["json"]["description"]
    assert "http://x/api/v1/tickets/t1" in kwargs["json"]["description"]


def test_gitlab_retry_finds_the_issue_a_timed_out_attempt_created():
    tracker = Tracker(name="gl", kind="gitlab", url="https://gitlab.example.com/team/app", token="glpat")
    http = FakeHttp(Response(200, [{"iid": 5, "web_url": "u5", "description": "x Tierline-Idempotency-Key: job-1"}]))
    assert trackers.create_defect(tracker, REQUEST, attempt=2, http=http) == ("5", "u5")
    assert [(m, u) for m, u, _ in http.calls] == [("GET", "https://gitlab.example.com/api/v4/projects/team%2Fapp/issues")]
    # nothing found: it creates
    http = FakeHttp(Response(200, []), Response(201, {"iid": 6, "web_url": "u6"}))
    assert trackers.create_defect(tracker, REQUEST, attempt=2, http=http) == ("6", "u6")
    assert [m for m, _, _ in http.calls] == ["GET", "POST"]


def test_retry_policy_backs_off_exponentially_up_to_a_cap():
    policy = RetryPolicy(backoff_seconds=2, max_backoff_seconds=30)
    assert [policy.delay(n) for n in range(1, 7)] == [2, 4, 8, 16, 30, 30]
    assert RetryPolicy.from_config({"poll_seconds": "0.5"}).poll_seconds == 0.5
    with pytest.raises(ValueError):
        RetryPolicy.from_config({"backoff_seconds": "soon"})
