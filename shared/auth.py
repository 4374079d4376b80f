"""Bearer tokens mapped to principals, from a YAML file that stores only SHA-256 hashes.

tokens.yaml:
    tokens:
      - {name: alice, role: agent, tier: L1, groups: [Service Desk], email: alice@example.com,
         token_sha256: <hex>}
Tokens are random 256-bit strings, so a plain SHA-256 is enough (no password stretching); the
file is re-read when it changes, so `tierline token create` works on a running system.
"""
from __future__ import annotations

import hashlib
import os
import secrets
import threading
from dataclasses import dataclass, field
from functools import wraps
from pathlib import Path

import yaml

ROLES = ("reporter", "agent", "lead", "admin")
STAFF = ("agent", "lead", "admin")


@dataclass(frozen=True)
class Principal:
    name: str
    role: str
    email: str | None = None
    tier: str | None = None
    groups: tuple[str, ...] = field(default_factory=tuple)

    @property
    def is_staff(self) -> bool:
        return self.role in STAFF

    def to_dict(self) -> dict:
        return {"name": self.name, "role": self.role, "email": self.email, "tier": self.tier,
                "groups": list(self.groups)}


class AuthError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class TokenStore:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: float | None = None
        self._by_hash: dict[str, Principal] = {}

    def _load(self) -> None:
        try:
            stamp = self.path.stat().st_mtime
        except FileNotFoundError:
            self._by_hash, self._stamp = {}, None
            return
        if stamp == self._stamp:
            return
        doc = yaml.safe_load(self.path.read_text(encoding="utf-8")) or {}
        by_hash = {}
        for entry in doc.get("tokens") or []:
            role = entry.get("role")
            if role not in ROLES:
                raise ValueError(f"{self.path}: token {entry.get('name')!r} has unknown role {role!r}")
            by_hash[entry["token_sha256"]] = Principal(
                name=entry["name"], role=role, email=entry.get("email"), tier=entry.get("tier"),
                groups=tuple(entry.get("groups") or ()))
        self._by_hash, self._stamp = by_hash, stamp

    def authenticate(self, header: str | None) -> Principal:
        if not header or not header.startswith("Bearer "):
            raise AuthError(401, "missing bearer token (Authorization: Bearer <token>)")
        token = header[len("Bearer "):].strip()
        with self._lock:
            self._load()
            principal = self._by_hash.get(hash_token(token))
        if principal is None:
            raise AuthError(401, "invalid token")
        return principal

    def add(self, *, name: str, role: str, email: str | None = None, tier: str | None = None,
            groups: list[str] | None = None, token: str | None = None) -> str:
        """Append a principal; returns the plaintext token (shown once, never stored)."""
        if role not in ROLES:
            raise ValueError(f"role: must be one of {', '.join(ROLES)}")
        token = token or secrets.token_urlsafe(32)
        with self._lock:
            doc = {"tokens": []}
            if self.path.exists():
                doc = yaml.safe_load(self.path.read_text(encoding="utf-8")) or {"tokens": []}
            # The name is the principal's identity (actor, created_by, assignee, Idempotency-Key
            # scope): a second token under one name would share what the first one owns.
            if any(entry.get("name") == name for entry in doc.get("tokens") or []):
                raise ValueError(f"name: a token named {name!r} exists; choose another name")
            doc.setdefault("tokens", []).append({
                "name": name, "role": role, "email": email, "tier": tier, "groups": list(groups or []),
                "token_sha256": hash_token(token)})
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
            os.chmod(tmp, 0o600)
            tmp.replace(self.path)
        return token


def current_principal() -> Principal:
    from flask import g
    return g.principal


def roles(*allowed: str):
    """Endpoint decorator: 403 unless the caller's role is one of `allowed`."""
    for role in allowed:
        if role not in ROLES:
            raise ValueError(f"unknown role {role}")

    def decorate(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            principal = current_principal()
            if principal.role not in allowed:
                raise AuthError(403, f"role {principal.role!r} may not do this (needs {' or '.join(allowed)})")
            return view(*args, **kwargs)
        return wrapper
    return decorate
