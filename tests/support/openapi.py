"""Does an answer conform to the API contract (``gateway/openapi.yaml``)? For tests that already hold
answers (the contract corpus, hostile bodies): ``problems(...)`` lists what does not conform.

The operation is found by method and path template (``{x}`` matches any one segment, so a malformed
id finds its operation and must get a documented 400). A request the document has no operation for
(an unknown path, a wrong method) must get a 404 or 405 in the error envelope. Then: the status is
documented; the content type is the documented one, and the body validates against its schema
(JSON Schema 2020-12, formats checked), or is empty where none is documented (204, 304); required
response headers are present and valid (only those in ``header_names`` when given: a caller that kept
only some headers).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Collection, Mapping
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import referencing
import referencing.jsonschema

from gateway.openapi import METHODS, load_spec
from parity.diff import HEADERS_THAT_MATTER, Observation

URI = "urn:shop-api"


@functools.cache
def spec() -> dict[str, Any]:
    return load_spec()


@functools.cache
def _registry() -> referencing.Registry[Any]:
    resource = referencing.jsonschema.DRAFT202012.create_resource(spec())
    return referencing.Registry().with_resource(URI, resource)


def _escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


def _validate(pointer: str, instance: Any) -> list[str]:
    validator = jsonschema.Draft202012Validator(
        {"$ref": f"{URI}#{pointer}"},
        registry=_registry(),
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
    )
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '(body)'}: {error.message}"
        for error in sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.path)))
    ]


def find_operation(method: str, path: str) -> tuple[str, str] | None:
    """(path template, lower-case method) of the documented operation for this request, or None."""
    segments = path.split("/")
    for template, item in spec()["paths"].items():
        parts = template.split("/")
        if len(parts) == len(segments) and all(
            p == s or (p.startswith("{") and p.endswith("}") and s)
            for p, s in zip(parts, segments, strict=True)
        ):
            if method.lower() in item:
                return template, method.lower()
            if method == "HEAD" and "get" in item:
                return template, "get"
    return None


def _response(template: str, method: str, status: int) -> tuple[str, dict[str, Any]] | None:
    """(JSON pointer, response object) of ``status``, ``$ref`` followed."""
    responses = spec()["paths"][template][method]["responses"]
    key = str(status) if str(status) in responses else "default" if "default" in responses else None
    if key is None:
        return None
    pointer = f"/paths/{_escape(template)}/{method}/responses/{key}"
    response = responses[key]
    while "$ref" in response:
        pointer = response["$ref"][1:]
        response = spec()
        for part in pointer.split("/")[1:]:
            response = response[part.replace("~1", "/").replace("~0", "~")]
    return pointer, response


def _body_problems(
    pointer: str, response: Mapping[str, Any], headers: Mapping[str, str], body: bytes
) -> list[str]:
    content = response.get("content") or {}
    if not content:
        return [] if body == b"" else [f"a body where none is documented: {body[:200]!r}"]
    media_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type not in content:
        return [f"content type {headers.get('content-type')!r}, documented {sorted(content)}"]
    if media_type != "application/json":
        return []
    try:
        instance = json.loads(body)
    except ValueError:
        return [f"not JSON: {body[:200]!r}"]
    return _validate(f"{pointer}/content/{_escape(media_type)}/schema", instance)


def _header_problems(
    pointer: str, response: Mapping[str, Any], headers: Mapping[str, str], names: Collection[str] | None
) -> list[str]:
    found = []
    for name, header in (response.get("headers") or {}).items():
        if "$ref" in header:
            pointer_to, header = (
                header["$ref"][1:],
                spec()["components"]["headers"][header["$ref"].rsplit("/", 1)[1]],
            )
        else:
            pointer_to = f"{pointer}/headers/{_escape(name)}"
        if names is not None and name.lower() not in names:
            continue
        value = headers.get(name.lower())
        if value is None:
            if header.get("required"):
                found.append(f"required header {name} missing")
            continue
        found += [f"header {name}: {p}" for p in _validate(f"{pointer_to}/schema", value)]
    return found


def problems(
    method: str,
    target: str,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    header_names: Collection[str] | None = None,
) -> list[str]:
    """What in this answer (``headers`` with lower-case names) breaks the contract; [] if nothing."""
    path = urlsplit(target).path
    found = find_operation(method, path)
    if found is None:
        if status not in (404, 405):
            return [f"{method} {path} is not documented, so it must be a 404 or 405, got {status}"]
        media_type = headers.get("content-type", "").split(";", 1)[0].strip()
        if media_type != "application/json":
            return [f"an undocumented request's {status} has content type {media_type!r}"]
        return _validate("/components/schemas/Error", json.loads(body))
    template, operation = found
    response = _response(template, operation, status)
    if response is None:
        return [f"{method} {template}: status {status} is not documented"]
    pointer, documented = response
    where = f"{method} {template} {status}"
    body_found = [] if method == "HEAD" else _body_problems(pointer, documented, headers, body)
    return [
        f"{where}: {p}" for p in (*body_found, *_header_problems(pointer, documented, headers, header_names))
    ]


def operations() -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path template, operation) of every documented operation."""
    return [
        (method, template, item[method])
        for template, item in spec()["paths"].items()
        for method in METHODS
        if method in item
    ]


def observation_problems(method: str, target: str, observed: Observation) -> list[str]:
    """``problems`` of a parity observation (it keeps only ``HEADERS_THAT_MATTER``)."""
    return problems(
        method, target, observed.status, observed.headers, observed.body, header_names=HEADERS_THAT_MATTER
    )
