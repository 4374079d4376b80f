"""Settings from TIERLINE_* environment variables and an optional YAML file.

The YAML file (TIERLINE_CONFIG, default: the shipped `shared/defaults/tierline.yaml`) holds the
domain defaults (priorities, calendars, policies, groups, ladders, notification rules) and may
hold a `settings:` mapping with the same names as the variables, lower-case and without the
prefix. Environment variables win over the file. A bad value stops the service with one line
naming the setting (ConfigError).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

import yaml

DEFAULTS_FILE = Path(__file__).parent / "defaults" / "tierline.yaml"
SERVICES = ("intake", "sla", "escalation", "notify")


class ConfigError(Exception):
    """A setting is missing or malformed; the message names it."""


def _bool(raw: str) -> bool:
    value = str(raw).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true/false, got {raw!r}")


def _positive(kind):
    def parse(raw):
        value = kind(raw)
        if value <= 0:
            raise ValueError(f"must be positive, got {raw!r}")
        return value
    return parse


def _non_negative(kind):
    def parse(raw):
        value = kind(raw)
        if value < 0:
            raise ValueError(f"must be 0 or more, got {raw!r}")
        return value
    return parse


def _choice(raw: str, allowed: tuple[str, ...]) -> str:
    if raw not in allowed:
        raise ValueError(f"expected one of {', '.join(allowed)}, got {raw!r}")
    return raw


def _level(raw: str) -> str:
    value = str(raw).strip().upper()
    if value not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ValueError(f"expected DEBUG, INFO, WARNING or ERROR, got {raw!r}")
    return value


def _url(raw: str) -> str:
    if "://" not in str(raw):
        raise ValueError(f"expected a URL like scheme://..., got {raw!r}")
    return str(raw)


@dataclass(frozen=True)
class Settings:
    """One process's settings. Field names map to TIERLINE_<NAME>."""

    var_dir: str = "./var"
    bus_url: str = field(default="memory://", metadata={"parse": _url})
    bus_prefix: str = ""
    bus_queue_type: str = field(default="quorum", metadata={"parse": lambda v: _choice(v, ("quorum", "classic"))})
    database_url: str = field(default="", metadata={"parse": str})
    tokens_file: str = ""
    host: str = "127.0.0.1"
    port: int = field(default=8080, metadata={"parse": _positive(int)})
    http_threads: int = field(default=8, metadata={"parse": _positive(int)})
    max_body_bytes: int = field(default=1_048_576, metadata={"parse": _positive(int)})
    log_level: str = field(default="INFO", metadata={"parse": _level})
    log_json: bool = field(default=True, metadata={"parse": _bool})
    public_url: str = field(default="http://127.0.0.1:8080", metadata={"parse": _url})
    max_attempts: int = field(default=5, metadata={"parse": _positive(int)})
    prefetch: int = field(default=20, metadata={"parse": _positive(int)})
    consume_batch: int = field(default=20, metadata={"parse": _positive(int)})
    relay_interval: float = field(default=0.2, metadata={"parse": _positive(float)})
    sla_tick_seconds: float = field(default=0.5, metadata={"parse": _positive(float)})
    smtp_url: str = ""
    mail_from: str = "Tierline <tierline@localhost>"
    mail_outbox_dir: str = ""
    notify_retry_seconds: float = field(default=1.0, metadata={"parse": _positive(float)})
    notify_max_attempts: int = field(default=6, metadata={"parse": _positive(int)})
    notify_backoff_base: float = field(default=2.0, metadata={"parse": _positive(float)})
    notify_give_up_seconds: float = field(default=86400.0, metadata={"parse": _non_negative(float)})
    tracker_url: str = ""
    tracker_kind: str = "webhook"
    tracker_token: str = field(default="", metadata={"secret": True})
    tracker_secret: str = field(default="", metadata={"secret": True})
    reopen_window_days: int = field(default=14, metadata={"parse": _positive(int)})
    config_file: str = str(DEFAULTS_FILE)
    domain: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def database_for(self, service: str) -> str:
        """The service's own database: TIERLINE_<SERVICE>_DATABASE_URL, else TIERLINE_DATABASE_URL,
        else a SQLite file under var_dir."""
        env_value = os.environ.get(f"TIERLINE_{service.upper()}_DATABASE_URL")
        if env_value:
            return env_value
        if self.database_url:
            return self.database_url
        return f"sqlite:///{Path(self.var_dir).resolve() / (service + '.db')}"

    def tokens_path(self) -> Path:
        return Path(self.tokens_file or Path(self.var_dir) / "tokens.yaml")

    def outbox_dir(self) -> Path:
        return Path(self.mail_outbox_dir or Path(self.var_dir) / "outbox")

    def redacted(self) -> dict:
        """For logs: secrets and URL passwords never appear."""
        out = {}
        for f in fields(self):
            if f.name == "domain":
                continue
            value = getattr(self, f.name)
            if f.metadata.get("secret") and value:
                value = "***"
            elif isinstance(value, str) and "://" in value and "@" in value:
                scheme, rest = value.split("://", 1)
                creds, host = rest.rsplit("@", 1)
                value = f"{scheme}://{creds.split(':')[0]}:***@{host}"
            out[f.name] = value
        return out


def load_settings(env: Mapping[str, str] | None = None, **overrides) -> Settings:
    """Build Settings: file `settings:` < environment < keyword overrides."""
    env = os.environ if env is None else env
    config_file = overrides.get("config_file") or env.get("TIERLINE_CONFIG") or str(DEFAULTS_FILE)
    try:
        doc = yaml.safe_load(Path(config_file).read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"TIERLINE_CONFIG: file not found: {config_file}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"TIERLINE_CONFIG: not valid YAML: {config_file}: {exc}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"TIERLINE_CONFIG: expected a mapping at the top of {config_file}")
    values: dict[str, Any] = {"config_file": config_file}
    file_settings = doc.get("settings") or {}
    for f in fields(Settings):
        if f.name in ("domain", "config_file"):
            continue
        name = f"TIERLINE_{f.name.upper()}"
        raw = overrides.get(f.name, env.get(name, file_settings.get(f.name)))
        if raw is None:
            continue
        parse = f.metadata.get("parse") or (lambda v, t=type(f.default): t(v))
        try:
            values[f.name] = raw if f.name in overrides and not isinstance(raw, str) else parse(raw)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{name}: {exc}") from None
    values["domain"] = {k: v for k, v in doc.items() if k != "settings"}
    return Settings(**values)
