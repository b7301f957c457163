"""Property-based API testing with schemathesis: generated requests for every documented operation,
each answer checked against the contract (gateway/openapi.yaml; ADR 0019).

``fuzz(base_url, session=…, operation_ids=…, max_examples=…)`` runs each operation's examples (the
document's own, then generated: valid and invalid inputs alike) and returns one line per operation
that failed, [] when all passed. Checks: no 5xx, the status is documented, the content type is the
documented one, the body and required headers match their schemas, and every 4xx/5xx is the error
envelope. ``SigningSession`` signs each request with the gateway's identity assertion, to call a
backend directly; ``bearer_session`` sends a real access token.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections import Counter
from collections.abc import Callable, Collection
from typing import Any

import hypothesis
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis import GenerationMode
from schemathesis.checks import CheckContext, not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

import identity
from gateway.settings import load_settings
from tests.support.openapi import spec

ENVELOPE_KEYS = {"code", "message", "request_id"}
GATEWAY_MAX_URL_BYTES = load_settings({}).max_url_bytes  # the gateway's default (docs/gateway.md)


class NotAnEnvelope(AssertionError):
    pass


def error_envelope(
    ctx: CheckContext, response: schemathesis.Response, case: schemathesis.Case
) -> bool | None:
    """Every 4xx and 5xx carries ``{"error": {"code", "message", "request_id", ...}}`` as JSON."""
    if response.status_code < 400:
        return None
    try:
        body = json.loads(response.content)
    except ValueError:
        raise NotAnEnvelope(f"{response.status_code} is not JSON: {response.content[:200]!r}") from None
    error = body.get("error") if isinstance(body, dict) else None
    if list(body) != ["error"] or not isinstance(error, dict) or not set(error) >= ENVELOPE_KEYS:
        raise NotAnEnvelope(f"{response.status_code} is not the error envelope: {response.content[:200]!r}")
    return None


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    error_envelope,
]


@functools.cache
def schema() -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_dict(spec())


class SigningSession(requests.Session):
    """Adds the identity assertion for ``user_id`` (anonymous when empty) to every request, as the
    gateway would: over the method, raw path and query, and the exact body bytes."""

    def __init__(self, secret: str, user_id: str) -> None:
        super().__init__()
        self.secret, self.user_id = secret, user_id

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        # Only what the gateway forwards: a longer URL gets its 414 and never reaches a backend (whose
        # server would answer its own HTML 414).
        hypothesis.assume(len(request.path_url.encode()) <= GATEWAY_MAX_URL_BYTES)
        path, _, query = (request.path_url or "/").partition("?")
        body = request.body or b""
        # A request the gateway could not sign either (it answers 400 itself) goes unsigned.
        with contextlib.suppress(identity.IdentityError):
            request.headers.update(
                identity.sign(
                    self.secret,
                    method=request.method or "GET",
                    path=path,
                    query=query,
                    body=body.encode() if isinstance(body, str) else body,
                    user_id=self.user_id,
                    scopes="user" if self.user_id else "",
                    request_id="api-fuzz",
                )
            )
        return super().send(request, **kwargs)


def bearer_session(token: str) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    return session


def operation_ids(prefixes: Collection[str] = ("",), exclude: Collection[str] = ()) -> list[str]:
    """The documented operation ids starting with one of ``prefixes``, minus ``exclude``."""
    return [
        operation["operationId"]
        for item in spec()["paths"].values()
        for operation in item.values()
        if operation["operationId"].startswith(tuple(prefixes)) and operation["operationId"] not in exclude
    ]


def fuzz(
    base_url: str,
    *,
    session: requests.Session,
    operation_ids: Collection[str],
    max_examples: int,
    derandomize: bool = True,
    api: schemathesis.BaseSchema | None = None,
    statuses: Counter[tuple[str, int]] | None = None,
) -> list[str]:
    """Run every operation in ``operation_ids``; one line per failing operation (its first failure).
    ``statuses`` counts the answers per (operation id, status)."""
    api = api or schema()
    counted: Counter[tuple[str, int]] = Counter() if statuses is None else statuses
    failures = []
    for operation_id in operation_ids:
        operation = api.find_operation_by_id(operation_id)  # type: ignore[attr-defined]
        strategy = operation.as_strategy(GenerationMode.POSITIVE) | operation.as_strategy(
            GenerationMode.NEGATIVE
        )
        settings = hypothesis.settings(
            max_examples=max_examples,
            deadline=None,
            database=None,
            derandomize=derandomize,
            phases=[Phase.explicit, Phase.generate],  # report the first failure, do not shrink it
            suppress_health_check=list(HealthCheck),
            print_blob=False,
        )
        test = hypothesis.given(case=strategy)(_call_and_check(base_url, session, operation_id, counted))
        try:
            settings(test)()
        except (Exception, BaseExceptionGroup) as exc:  # a FailureGroup, or a request that could not be sent
            failures.append(f"{operation_id}: {_describe(exc)}")
    return failures


def _call_and_check(
    base_url: str, session: requests.Session, operation_id: str, statuses: Counter[tuple[str, int]]
) -> Callable[[schemathesis.Case], None]:
    def call_and_check(case: schemathesis.Case) -> None:
        response = case.call(base_url=base_url, session=session, timeout=10)
        statuses[operation_id, response.status_code] += 1
        case.validate_response(response, checks=CHECKS)

    return call_and_check


def _describe(exc: BaseException) -> str:
    """Every failure, with the request that reproduces it (hypothesis groups distinct ones)."""
    if isinstance(exc, FailureGroup):
        return str(exc)  # schemathesis's own report: each check failed, the answer, a curl command
    if isinstance(exc, BaseExceptionGroup):
        return "\n".join(_describe(inner) for inner in exc.exceptions)
    return f"{type(exc).__name__}: {exc}"
