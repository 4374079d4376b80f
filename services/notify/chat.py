"""Chat channels over HTTP: Slack-compatible incoming webhooks (also Mattermost, Rocket.Chat),
the Telegram Bot API, and a generic JSON webhook signed with HMAC-SHA256.

Webhook URLs and bot tokens are secrets: they never appear in an error message or a log line
(requests puts the URL in its exceptions, so only the exception's class and the host are kept).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
from urllib.parse import urlsplit

import requests

from services.notify.mail import DeliveryError

TIMEOUT = 5.0
TEXT_LIMIT = 4000  # Telegram's cap is 4096; long enough for every template
TELEGRAM_API = "https://api.telegram.org"
SIGNATURE_HEADER = "X-Tierline-Signature"
# urllib3 logs request lines (with the /bot<token>/ path) at DEBUG: keep that out of any log.
logging.getLogger("urllib3.connectionpool").setLevel(logging.INFO)


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def chat_text(subject: str, text: str) -> str:
    message = f"{subject}\n\n{text}".strip()
    return message if len(message) <= TEXT_LIMIT else message[: TEXT_LIMIT - 1] + "…"


def _post(url: str, *, body: bytes, headers: dict, session: requests.Session | None = None) -> None:
    host = urlsplit(url).hostname or "?"
    try:
        response = (session or requests).post(url, data=body, headers=headers, timeout=TIMEOUT,
                                              allow_redirects=False)
    except requests.RequestException as exc:
        raise DeliveryError(f"{type(exc).__name__} contacting {host}") from None
    status = response.status_code
    if 200 <= status < 300:
        return
    # 4xx says the hook, token or chat is wrong (gone, revoked): retrying cannot help.
    # Timeouts, throttling and server errors are worth another attempt.
    permanent = 300 <= status < 500 and status not in (408, 425, 429)
    raise DeliveryError(f"HTTP {status} from {host}", permanent=permanent)


def _json(payload: dict) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def send_slack(config: dict, text: str, **kwargs) -> None:
    payload = {"text": text}
    if config.get("channel"):
        payload["channel"] = config["channel"]
    _post(config["url"], body=_json(payload), headers={"Content-Type": "application/json"}, **kwargs)


def send_telegram(config: dict, text: str, **kwargs) -> None:
    base = (config.get("base_url") or TELEGRAM_API).rstrip("/")
    # Plain text (no parse_mode): ticket content cannot smuggle markup into the message.
    body = _json({"chat_id": config["chat_id"], "text": text, "disable_web_page_preview": True})
    _post(f"{base}/bot{config['bot_token']}/sendMessage", body=body,
          headers={"Content-Type": "application/json"}, **kwargs)


def send_webhook(config: dict, payload: dict, *, delivery_id: str, event_type: str, **kwargs) -> None:
    body = _json(payload)
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: signature(config["secret"], body),
               "X-Tierline-Delivery": delivery_id, "X-Tierline-Event": event_type}
    _post(config["url"], body=body, headers=headers, **kwargs)
