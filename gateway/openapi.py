"""The public API contract, served by the gateway itself: ``/api/v1/openapi.json`` and ``/api/v1/docs``.

``gateway/openapi.yaml`` is the one source (ADR 0019). It is read once, on the first request for
either path, and kept as two byte strings: the JSON document and a reference page rendered from it
here (plain HTML, one inline stylesheet allowed by its hash in the CSP, no script, nothing fetched
from anywhere). Both are answered without touching a backend, with ``X-Served-By: gateway``.
``python -m gateway.openapi [--html]`` prints either, e.g. to publish the page as a file.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import json
import re
import sys
import uuid
from pathlib import Path
from typing import Any

import yaml

from gateway.errors import envelope

SPEC_FILE = Path(__file__).with_name("openapi.yaml")
JSON_PATH = "/api/v1/openapi.json"
DOCS_PATH = "/api/v1/docs"
PATHS = frozenset({JSON_PATH, DOCS_PATH})
_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")  # as the proxy path: a sane one is echoed
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
_STYLE = (
    "body{font:15px/1.45 system-ui,sans-serif;max-width:64rem;margin:2rem auto;padding:0 1rem;color:#222}"
    "h2{border-bottom:1px solid #ccc;margin-top:2.5rem}h3{margin:1.6rem 0 .4rem;font-size:1.05rem}"
    "code,pre{font:13px/1.4 ui-monospace,monospace}pre{background:#f5f5f5;padding:.6rem;overflow:auto}"
    ".m{display:inline-block;min-width:4.2rem;font-weight:700}.d{white-space:pre-wrap}"
    "table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.2rem .5rem;text-align:left}"
)


def load_spec(path: Path = SPEC_FILE) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(document, dict):
        raise ValueError(f"{path}: not an OpenAPI document")
    return document


def _ref(schema: Any) -> str:
    """A schema as compact JSON, ``$ref``s turned into links to the schema's section."""
    text = html.escape(json.dumps(schema, ensure_ascii=False, indent=1))
    prefix = html.escape('"#/components/schemas/')
    parts = text.split(prefix)
    out = [parts[0]]
    for part in parts[1:]:
        name, _, rest = part.partition(html.escape('"'))
        out.append(f'"<a href="#schema-{name}">#/components/schemas/{name}</a>"{rest}')
    return "".join(out)


def _auth(operation: dict[str, Any]) -> str:
    security = operation.get("security", [])
    if not security:
        return "none"
    return "optional" if {} in security else "required (Bearer token)"


def _operation(method: str, path: str, operation: dict[str, Any]) -> str:
    e = html.escape
    lines = [
        f'<h3 id="{e(operation.get("operationId", ""))}"><span class="m">{method.upper()}</span>'
        f"<code>{e(path)}</code> — {e(operation.get('summary', ''))}</h3>",
        f"<p>operationId <code>{e(operation.get('operationId', ''))}</code>; auth: {_auth(operation)}</p>",
    ]
    if "description" in operation:
        lines.append(f'<p class="d">{e(operation["description"])}</p>')
    parameters = operation.get("parameters", [])
    if parameters:
        rows = "".join(
            f"<tr><td><code>{e(p.get('name', ''))}</code></td><td>{e(p.get('in', ''))}</td>"
            f"<td>{'yes' if p.get('required') else 'no'}</td>"
            f"<td><pre>{_ref(p.get('schema', p))}</pre></td></tr>"
            for p in parameters
        )
        lines.append(
            f"<table><tr><th>parameter</th><th>in</th><th>required</th><th>schema</th></tr>{rows}</table>"
        )
    body = operation.get("requestBody")
    if body:
        for media_type, content in body.get("content", {}).items():
            lines.append(
                f"<p>Request body <code>{e(media_type)}</code>:</p><pre>{_ref(content.get('schema'))}</pre>"
            )
    items = []
    for status, response in operation.get("responses", {}).items():
        schemas = [content.get("schema") for content in response.get("content", {}).values()]
        shown = f"<pre>{_ref(schemas[0])}</pre>" if schemas and schemas[0] is not None else ""
        items.append(f"<li><b>{e(status)}</b> {e(response.get('description', ''))}{shown}</li>")
    lines.append(f"<ul>{''.join(items)}</ul>")
    return "\n".join(lines)


def resolve(document: dict[str, Any], node: Any) -> Any:
    """Inline ``$ref``s to components other than schemas (parameters, responses), for the page."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/") and "/schemas/" not in ref:
            target: Any = document
            for part in ref[2:].split("/"):
                target = target[part]
            return resolve(document, target)
        return {key: resolve(document, value) for key, value in node.items()}
    if isinstance(node, list):
        return [resolve(document, value) for value in node]
    return node


def render_html(document: dict[str, Any]) -> str:
    """The reference page: every operation by tag, then every schema; nothing outside the page."""
    e = html.escape
    info = document.get("info", {})
    resolved = resolve(document, document.get("paths", {}))
    by_tag: dict[str, list[str]] = {tag.get("name", ""): [] for tag in document.get("tags", [])}
    for path, item in resolved.items():
        for method in METHODS:
            if method in item:
                operation = item[method]
                tag = (operation.get("tags") or ["other"])[0]
                by_tag.setdefault(tag, []).append(_operation(method, path, operation))
    toc = " · ".join(f'<a href="#tag-{e(tag)}">{e(tag)}</a>' for tag in by_tag)
    sections = [
        f'<h2 id="tag-{e(tag)}">{e(tag)}</h2>\n' + "\n".join(ops) for tag, ops in by_tag.items() if ops
    ]
    schemas = document.get("components", {}).get("schemas", {})
    schema_html = "\n".join(
        f'<h3 id="schema-{e(name)}">{e(name)}</h3><pre>{_ref(schema)}</pre>'
        for name, schema in schemas.items()
    )
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{e(info.get('title', 'API'))} reference</title><style>{_STYLE}</style></head><body>\n"
        f"<h1>{e(info.get('title', 'API'))} <small>v{e(str(info.get('version', '')))}</small></h1>\n"
        f'<p class="d">{e(info.get("description", ""))}</p>\n'
        f'<p>The document: <a href="{JSON_PATH}">{JSON_PATH}</a> (OpenAPI {e(document.get("openapi", ""))}). '
        f"{toc} · <a href='#schemas'>schemas</a></p>\n"
        + "\n".join(sections)
        + f'\n<h2 id="schemas">schemas</h2>\n{schema_html}\n</body></html>\n'
    )


def _csp() -> str:
    digest = base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()
    return (
        f"default-src 'none'; style-src 'sha256-{digest}'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )


@functools.cache
def _answers() -> dict[str, tuple[bytes, bytes, bytes]]:
    """path → (content type, body, content security policy), built once per worker."""
    document = load_spec()
    spec = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
    page = render_html(document).encode()
    return {
        JSON_PATH: (b"application/json", spec, b"default-src 'none'; frame-ancestors 'none'"),
        DOCS_PATH: (b"text/html; charset=utf-8", page, _csp().encode()),
    }


async def serve(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answer a request for one of ``PATHS`` (GET or HEAD; anything else is a 405 envelope)."""
    method = scope["method"]
    incoming = dict(scope["headers"]).get(b"x-request-id", b"")
    request_id = incoming if _REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex.encode()
    if method not in ("GET", "HEAD"):
        message = f"{method} is not allowed; use GET, HEAD."
        error = envelope("method_not_allowed", message, request_id.decode())
        body = json.dumps(error, separators=(",", ":")).encode()
        status, content_type, extra = 405, b"application/json", [(b"allow", b"GET, HEAD")]
    else:
        content_type, body, csp = _answers()[scope["path"]]
        status, extra = 200, [(b"content-security-policy", csp), (b"cache-control", b"public, max-age=300")]
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", request_id),
        (b"x-served-by", b"gateway"),
        (b"x-content-type-options", b"nosniff"),
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})


def main(argv: list[str]) -> None:
    document = load_spec()
    if argv == ["--html"]:
        sys.stdout.write(render_html(document))
    else:
        sys.stdout.write(json.dumps(document, ensure_ascii=False, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
