"""The shared HTTP helpers through a tiny real app: error format, auth, roles, size limit."""
from __future__ import annotations

import pytest
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate
from sqlalchemy import exc as sa_exc

from shared.auth import TokenStore, roles
from shared.http import ApiError, create_service_app


class NoteIn(Schema):
    title = fields.String(required=True, validate=validate.Length(max=50))
    count = fields.Integer()


def make_app(tmp_path):
    blp = Blueprint("notes", __name__, url_prefix="/api/v1/notes")

    @blp.route("")
    class Notes(MethodView):
        @blp.arguments(NoteIn)
        @blp.response(201, NoteIn)
        @roles("agent", "admin")
        def post(self, data):
            if data["title"] == "taken":
                raise ApiError(409, "title already taken", {"title": ["taken"]})
            if data["title"] == "db-away":
                raise sa_exc.OperationalError("INSERT", {}, Exception("server closed the connection unexpectedly"))
            return data

    store = TokenStore(tmp_path / "tokens.yaml")
    tokens = {role: store.add(name=role, role=role) for role in ("reporter", "agent", "admin")}
    app = create_service_app(service="notes", title="Notes", prefix="/api/v1/notes", blueprints=[blp],
                             tokens=store, max_body_bytes=2048, ready=lambda: {"database": True, "bus": False})
    return app.test_client(), {r: {"Authorization": f"Bearer {t}"} for r, t in tokens.items()}


@pytest.fixture
def client(tmp_path):
    return make_app(tmp_path)


def error(resp):
    body = resp.get_json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "fields"}
    return body["error"]


def test_created_with_the_right_role(client):
    c, h = client
    resp = c.post("/api/v1/notes", json={"title": "hello", "count": 2}, headers=h["agent"])
    assert resp.status_code == 201 and resp.get_json() == {"title": "hello", "count": 2}


def test_401_without_or_with_a_bad_token(client):
    c, _ = client
    resp = c.post("/api/v1/notes", json={"title": "x"})
    assert resp.status_code == 401 and error(resp)["code"] == "unauthorized"
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    resp = c.post("/api/v1/notes", json={"title": "x"}, headers={"Authorization": "Bearer nope"})
    assert resp.status_code == 401 and error(resp)["message"] == "invalid token"


def test_403_for_a_wrong_role(client):
    c, h = client
    resp = c.post("/api/v1/notes", json={"title": "x"}, headers=h["reporter"])
    assert resp.status_code == 403 and "reporter" in error(resp)["message"]


def test_422_names_the_fields(client):
    c, h = client
    resp = c.post("/api/v1/notes", json={"count": "many", "title": "x" * 51}, headers=h["admin"])
    err = error(resp)
    assert resp.status_code == 422 and err["code"] == "validation_error"
    assert set(err["fields"]) == {"count", "title"}


def test_400_for_broken_or_deeply_nested_json(client):
    c, h = client
    resp = c.post("/api/v1/notes", data=b'{"title": ', content_type="application/json", headers=h["admin"])
    assert resp.status_code == 400 and error(resp)["message"] == "request body is not valid JSON"
    resp = c.post("/api/v1/notes", data=b"\xff\xfe{", content_type="application/json", headers=h["admin"])
    assert resp.status_code == 400
    deep = b"[" * 1000 + b"]" * 1000
    resp = c.post("/api/v1/notes", data=deep, content_type="application/json", headers=h["admin"])
    assert resp.status_code in (400, 422)


def test_413_for_an_oversize_body(client):
    c, h = client
    resp = c.post("/api/v1/notes", json={"title": "x" * 5000}, headers=h["admin"])
    assert resp.status_code == 413 and error(resp)["code"] == "payload_too_large"


def test_404_405_409_in_the_same_format(client):
    c, h = client
    assert error(c.get("/api/v1/notes/nothing", headers=h["admin"]))["code"] == "not_found"
    resp = c.delete("/api/v1/notes", headers=h["admin"])
    assert resp.status_code == 405 and error(resp)["code"] == "method_not_allowed"
    resp = c.post("/api/v1/notes", json={"title": "taken"}, headers=h["admin"])
    assert resp.status_code == 409 and error(resp)["fields"] == {"title": ["taken"]}


def test_health_is_public_metrics_and_everything_else_are_not(client):
    c, h = client
    assert c.get("/healthz").status_code == 200
    assert c.get("/api/v1/notes/healthz").get_json()["status"] == "ok"
    ready = c.get("/readyz")
    assert ready.status_code == 503 and ready.get_json()["checks"] == {"database": True, "bus": False}
    assert c.get("/metrics").status_code == 401
    metrics = c.get("/metrics", headers=h["reporter"])
    assert metrics.status_code == 200 and b"tierline_http_requests_total" in metrics.data
    spec = c.get("/api/v1/notes/openapi.json").get_json()
    assert "/api/v1/notes" in spec["paths"]


def test_503_with_retry_after_when_the_database_is_away(client):
    c, h = client
    resp = c.post("/api/v1/notes", json={"title": "db-away"}, headers=h["agent"])
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "1"
    assert error(resp)["code"] == "unavailable" and "retry" in error(resp)["message"]
