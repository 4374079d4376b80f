"""`create_app` helper shared by the four services (Flask + flask-smorest).

Gives every service the same error format
    {"error": {"code": ..., "message": ..., "fields": {...}}}
for every error (schema errors, 404/405/413, auth, domain conflicts), bearer-token auth on every
endpoint but health and the API docs, a request size limit, `/healthz`, `/readyz` and `/metrics`,
and OpenAPI at `/<prefix>/openapi.json` with a docs page at `/<prefix>/docs`.
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any, Callable, Iterable

import marshmallow as ma
from flask import Flask, Response, current_app, g, jsonify, request
from flask_smorest import Api
from sqlalchemy import exc as sa_exc
from werkzeug.exceptions import HTTPException

from shared import metrics
from shared.auth import AuthError, TokenStore

log = logging.getLogger(__name__)
CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
         405: "method_not_allowed", 409: "conflict", 413: "payload_too_large",
         415: "unsupported_media_type", 422: "validation_error", 429: "too_many_requests",
         500: "internal_error", 503: "unavailable"}
PUBLIC_ENDPOINTS = {"health.healthz", "health.readyz", "api-docs.openapi_json", "api-docs.openapi_swagger_ui",
                    "api-docs.openapi_redoc"}


class ApiError(Exception):
    """Raise from a view or a domain function to answer with the shared error format."""

    def __init__(self, status: int, message: str, fields: dict | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.fields = status, message, fields or {}
        self.code = code or CODES.get(status, "error")


def error_response(status: int, message: str, fields: dict | None = None, code: str | None = None,
                   headers: dict | None = None) -> Response:
    body = {"error": {"code": code or CODES.get(status, "error"), "message": message, "fields": fields or {}}}
    response = jsonify(body)
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _flatten_webargs(messages: Any) -> dict:
    """webargs says {"json": {"title": [...]}, "query": {...}}; clients want {"title": [...]}."""
    if not isinstance(messages, dict):
        return {"_": messages}
    fields: dict = {}
    for location, errors in messages.items():
        if isinstance(errors, dict):
            fields.update(errors)
        else:
            fields[location] = errors
    return fields


class ErrorDetailSchema(ma.Schema):
    code = ma.fields.String(metadata={"description": "machine-readable, e.g. validation_error"})
    message = ma.fields.String()
    fields = ma.fields.Dict(metadata={"description": "per-field messages"})


class ErrorSchema(ma.Schema):
    """Documents the shared error shape in every OpenAPI document (all 4xx/5xx answers)."""
    error = ma.fields.Nested(ErrorDetailSchema, required=True)


class TierlineApi(Api):
    ERROR_SCHEMA = ErrorSchema

    def handle_http_exception(self, error: HTTPException):
        data = getattr(error, "data", None) or {}
        fields = _flatten_webargs(data["messages"]) if "messages" in data else data.get("errors")
        message = data.get("message") or error.description or error.name
        if error.code == 400 and isinstance(fields, dict) and "json" in fields:
            message = "request body is not valid JSON"
        elif error.code == 422:
            message = "invalid fields: " + ", ".join(sorted(map(str, (fields or {}).keys())))
        elif error.code == 413:
            message = f"request body larger than {current_app.config['MAX_CONTENT_LENGTH']} bytes"
        return error_response(error.code or 500, message, fields, headers=data.get("headers"))


def deps() -> Any:
    """The service's dependencies (built by its bootstrap) for the current app."""
    return current_app.extensions["tierline"]


def create_service_app(*, service: str, title: str, prefix: str, blueprints: Iterable,
                       tokens: TokenStore, max_body_bytes: int, ready: Callable[[], dict[str, bool]],
                       dependencies: Any = None, extra_prefixes: Iterable[str] = (),
                       public_endpoints: Iterable[str] = ()) -> Flask:
    """`public_endpoints`: endpoint names that authenticate otherwise (e.g. a signed webhook)."""
    app = Flask(f"tierline.{service}")
    app.config.update(
        API_TITLE=title, API_VERSION="v1", OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX=prefix, OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs", OPENAPI_SWAGGER_UI_URL="https://cdn.jsdelivr.net/npm/swagger-ui-dist/",
        MAX_CONTENT_LENGTH=max_body_bytes, JSON_SORT_KEYS=False,
        API_SPEC_OPTIONS={"components": {"securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"}}}, "security": [{"bearer": []}]},
    )
    # Flask 3 ignores JSON_SORT_KEYS; sorting would also fail (500) on error messages that mix
    # int keys (list items) and str keys ("_schema"), as marshmallow reports them.
    app.json.sort_keys = False
    app.extensions["tierline"] = dependencies
    api = TierlineApi(app)
    for blueprint in blueprints:
        api.register_blueprint(blueprint)
    _add_health(app, service, prefix, list(extra_prefixes), ready)
    _add_guards(app, service, tokens, PUBLIC_ENDPOINTS | set(public_endpoints))
    return app


def _add_health(app: Flask, service: str, prefix: str, extra: list[str], ready) -> None:
    from flask import Blueprint

    health = Blueprint("health", __name__)

    def healthz():
        return jsonify({"status": "ok", "service": service})

    def readyz():
        checks = ready()
        ok = all(checks.values())
        return jsonify({"status": "ok" if ok else "unavailable", "service": service, "checks": checks}), (200 if ok else 503)

    def metrics_view():
        body, content_type = metrics.exposition()
        return Response(body, content_type=content_type)

    for base in ["", prefix, *extra]:
        health.add_url_rule(f"{base}/healthz", "healthz", healthz, methods=["GET"])
        health.add_url_rule(f"{base}/readyz", "readyz", readyz, methods=["GET"])
        health.add_url_rule(f"{base}/metrics", "metrics", metrics_view, methods=["GET"])
    app.register_blueprint(health)


def _has_nul(document: Any) -> bool:
    stack = [document]
    while stack:  # iterative: the parser already bounded the depth
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _nul_location() -> str | None:
    """PostgreSQL text cannot hold U+0000: a NUL anywhere in the input would reach a query and
    answer 500, so it is refused at the door (SQLite would store it; answers are the same on both)."""
    if "\x00" in request.path:
        return "path"
    if any("\x00" in key or "\x00" in value for key, value in request.args.items(multi=True)):
        return "query"
    if any("\x00" in value for _, value in request.headers.items()):
        return "headers"
    raw = request.get_data(cache=True)
    if b"\\u0000" in raw:  # JSON can only carry a NUL as this escape (raw NULs are not valid JSON)
        try:
            if _has_nul(json.loads(raw)):
                return "json"
        except ValueError:
            pass  # not JSON: the view answers 400 itself
    return None


def _add_guards(app: Flask, service: str, tokens: TokenStore, public: set[str]) -> None:
    @app.before_request
    def authenticate():
        g.started = time.perf_counter()
        if request.endpoint in public or request.url_rule is None or request.method == "OPTIONS":
            return None
        g.principal = tokens.authenticate(request.headers.get("Authorization"))
        return None

    @app.before_request
    def refuse_nul():
        where = _nul_location()
        if where is not None:
            return error_response(400, "U+0000 (NUL) characters are not accepted", {where: ["contains U+0000"]})
        return None

    @app.after_request
    def count(response: Response):
        metrics.HTTP_REQUESTS.labels(service=service, method=request.method, status=response.status_code).inc()
        metrics.HTTP_LATENCY.labels(service=service).observe(time.perf_counter() - g.get("started", time.perf_counter()))
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    @app.errorhandler(AuthError)
    def auth_error(exc: AuthError):
        headers = {"WWW-Authenticate": 'Bearer realm="tierline"'} if exc.status == 401 else None
        return error_response(exc.status, str(exc), headers=headers)

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError):
        return error_response(exc.status, exc.message, exc.fields, exc.code)

    @app.errorhandler(sa_exc.OperationalError)
    @app.errorhandler(sa_exc.InterfaceError)
    @app.errorhandler(sa_exc.DisconnectionError)
    def database_away(exc: Exception):
        # A restarting database, or a pooled connection it dropped (the pool is then refreshed).
        # Retrying is safe; a POST cut off during its commit should carry an Idempotency-Key.
        log.warning("database unavailable on %s %s: %s", request.method, request.path, type(exc).__name__)
        return error_response(503, "database unavailable, retry shortly", headers={"Retry-After": "1"})

    @app.errorhandler(RecursionError)
    def too_deep(_exc):
        return error_response(400, "JSON nested too deeply")

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):  # HTTPExceptions have their own, more specific handler
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal error")
