"""Property-based fuzzing of every service's OpenAPI document with schemathesis.

For each operation of each document, as admin: schema-valid requests (positive), schema-invalid
ones (negative), and valid ones aimed at objects that exist (a routed ticket, the shipped
groups, calendars, ladders, a sent delivery, a known recipient) so the handlers run past their
404s. Every answer must be no 5xx, have a status code the document lists, and match the
document's schema for that code (the shared error shape included).

Bounded and repeatable: a fixed number of examples per operation, derandomized.
"""
from __future__ import annotations

import warnings

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

pytestmark = pytest.mark.attack

DOCS = {"intake": "/api/v1/tickets/openapi.json", "sla": "/api/v1/sla/openapi.json",
        "escalation": "/api/v1/escalation/openapi.json", "notify": "/api/v1/notify/openapi.json"}
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance]
EXAMPLES = {"positive": 20, "negative": 12, "known": 10}


@pytest.fixture(scope="module")
def known(system):
    """Path parameters that name real objects, by operation path."""
    ticket = system.routed("reporter", title="Fuzzed ticket")
    system.wait_sla(ticket["id"])
    system.wait_escalation(ticket["id"])
    delivery = system.wait_deliveries(ticket_id=ticket["id"])[0]
    by_name = {"/groups/": "Service Desk", "/calendars/": "business-moscow", "/ladders/": "standard",
               "/trackers/": "default"}
    values = {"ticket_ref": ticket["id"], "ticket_id": ticket["id"], "policy_id": 2,
              "delivery_id": delivery["id"], "address": "kate@example.com"}

    def for_operation(operation) -> dict | None:
        names = [p.name for p in operation.path_parameters]
        if not names:
            return None
        out = {}
        for name in names:
            if name == "name":
                out[name] = next((v for k, v in by_name.items() if k in operation.path), None)
            else:
                out[name] = values.get(name)
        return out if all(v is not None for v in out.values()) else None
    return for_operation


def fuzz(operation, mode, headers, examples, path_parameters=None):
    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=path_parameters))
    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None,
              derandomize=True)
    def check(case):
        case.call_and_validate(headers=headers, checks=CHECKS)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # schemathesis' own use of `random` inside strategies
        check()


@pytest.mark.parametrize("service", list(DOCS))
def test_every_operation_answers_without_5xx_and_as_documented(service, system, known):
    schema = schemathesis.openapi.from_wsgi(DOCS[service], system.app)
    admin = system.tokens["admin"]
    failures, runs = [], 0
    for result in schema.get_all_operations():
        operation = result.ok()
        passes = [("positive", GenerationMode.POSITIVE, None), ("negative", GenerationMode.NEGATIVE, None)]
        fixed = known(operation)
        if fixed:
            passes.append(("known", GenerationMode.POSITIVE, fixed))
        for label, mode, path_parameters in passes:
            runs += 1
            try:
                fuzz(operation, mode, admin, EXAMPLES[label], path_parameters)
            except Exception as exc:  # noqa: BLE001 - every operation runs; all failures are reported
                failures.append(f"{operation.label} [{label}]: {exc}")
    assert runs >= 10, f"{service}: only {runs} fuzzing passes; is the OpenAPI document complete?"
    assert not failures, "\n\n".join(failures)


@pytest.mark.parametrize("service", list(DOCS))
def test_every_document_describes_the_shared_error_shape(service, system):
    """Regression: the documents described flask-smorest's default error body
    ({code, status, message, errors}, no other properties), not {"error": {code, message, fields}}."""
    doc = system.call("GET", DOCS[service], None).get_json()
    error = doc["components"]["schemas"]["Error"]
    assert set(error["properties"]) == {"error"}
    detail = error["properties"]["error"]
    detail = doc["components"]["schemas"][detail["$ref"].rsplit("/", 1)[1]] if "$ref" in detail else detail
    assert set(detail["properties"]) == {"code", "message", "fields"}
