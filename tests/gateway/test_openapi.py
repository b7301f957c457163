"""The API contract document (gateway/openapi.yaml): valid OpenAPI 3.1, complete, and served by the
gateway as JSON and as a self-contained reference page (in-process: these paths need no backend)."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from openapi_spec_validator import validate

from flags import route_ids
from flags.routes_file import SHIPPED_ROUTES_FILE
from gateway.app import GatewayApp
from gateway.openapi import DOCS_PATH, JSON_PATH, load_spec, render_html
from gateway.routes import load_table
from gateway.settings import load_settings
from tests.support import openapi


def test_the_document_is_valid_openapi_3_1() -> None:
    document = load_spec()
    assert document["openapi"].startswith("3.1.")
    validate(document)


def test_every_hot_route_is_documented_under_its_route_id() -> None:
    table = load_table(SHIPPED_ROUTES_FILE, {})
    documented = {
        operation["operationId"]: (method, path) for method, path, operation in openapi.operations()
    }
    for route in table.routes:
        for method in route.methods - {"HEAD"}:
            assert documented.get(route.id) == (method.lower(), route.path), route.id
    assert set(route_ids(SHIPPED_ROUTES_FILE)) <= set(documented)


def _legacy_paths(patterns: list[Any], prefix: str = "") -> list[str]:
    paths = []
    for pattern in patterns:
        text = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            paths += _legacy_paths(pattern.url_patterns, text)
        elif isinstance(pattern, URLPattern):
            paths.append("/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", text))
    return paths


def test_every_endpoint_of_the_monolith_is_documented() -> None:
    documented = set(load_spec()["paths"])
    missing = sorted(set(_legacy_paths(get_resolver().url_patterns)) - documented)
    assert not missing, f"not in gateway/openapi.yaml: {missing}"


def test_every_operation_documents_its_errors_in_the_envelope() -> None:
    for method, path, operation in openapi.operations():
        assert operation.get("operationId"), (method, path)
        assert "security" in operation, f"{method} {path}: say whether it needs a token"
        for status, response in operation["responses"].items():
            if status.startswith(("4", "5")):
                assert response["$ref"].startswith("#/components/responses/"), (method, path, status)
        # A token is checked where one is required or optional (an invalid one is a 401 there too).
        unauthenticated = operation["responses"].get("401") == {
            "$ref": "#/components/responses/Unauthenticated"
        }
        assert unauthenticated == bool(operation["security"]), (method, path)


def test_a_wrong_typed_field_does_not_conform() -> None:
    good = {"item_id": 1, "review_count": 2, "rating_average": 4.5, "distribution": dict.fromkeys("12345", 0)}
    target = "/api/v1/reviews/items/1/summary"
    headers = {"content-type": "application/json"}
    assert openapi.problems("GET", target, 200, headers, json.dumps(good).encode()) == []
    bad = {**good, "review_count": "2"}
    assert openapi.problems("GET", target, 200, headers, json.dumps(bad).encode()) == [
        "GET /api/v1/reviews/items/{item_id}/summary 200: review_count: '2' is not of type 'integer'"
    ]
    assert openapi.problems("GET", target, 418, headers, b"{}") == [
        "GET /api/v1/reviews/items/{item_id}/summary: status 418 is not documented"
    ]


def _get(
    path: str, method: str = "GET", headers: list[tuple[bytes, bytes]] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One request to the gateway app, in-process, without its lifespan: these paths need none."""
    app = GatewayApp(load_settings({}))
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "headers": headers or [],
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    start, body = sent
    headers_out = {name.decode(): value.decode() for name, value in start["headers"]}
    return start["status"], headers_out, body["body"]


def test_the_gateway_serves_the_document_as_json() -> None:
    status, headers, body = _get(JSON_PATH, headers=[(b"x-request-id", b"abc-1")])
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert headers["x-served-by"] == "gateway"
    assert headers["x-request-id"] == "abc-1"
    assert int(headers["content-length"]) == len(body)
    assert json.loads(body) == load_spec()
    assert openapi.problems("GET", JSON_PATH, status, headers, body) == []


def test_the_reference_page_is_self_contained() -> None:
    status, headers, body = _get(DOCS_PATH)
    page = body.decode()
    assert (status, headers["content-type"]) == (200, "text/html; charset=utf-8")
    # Nothing loaded from elsewhere: no script, no external stylesheet, font or image, and the CSP
    # allows only the page's own stylesheet (by its hash).
    assert not re.search(r"<script|<link|<img|@import|url\(|src=", page, re.IGNORECASE)
    assert not re.search(r"(href|action)=[\"']?(https?:)?//", page)
    assert headers["content-security-policy"].startswith("default-src 'none'; style-src 'sha256-")
    for _, _, operation in openapi.operations():
        assert f'id="{operation["operationId"]}"' in page
    assert 'href="#schema-Error"' in page
    assert page == render_html(load_spec())


@pytest.mark.parametrize("method", ["POST", "DELETE"])
def test_other_methods_are_refused_in_the_envelope(method: str) -> None:
    status, headers, body = _get(JSON_PATH, method)
    assert (status, headers["allow"]) == (405, "GET, HEAD")
    assert json.loads(body)["error"]["code"] == "method_not_allowed"


def test_head_answers_the_headers_only() -> None:
    status, headers, body = _get(DOCS_PATH, "HEAD")
    assert (status, body) == (200, b"")
    assert int(headers["content-length"]) > 1000
