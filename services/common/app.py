"""What both services' ASGI apps are made of: request id + envelope middleware, identity, dispatch.

``build_app`` assembles a Starlette app from routes; every error a client can see
is the JSON envelope, and every response carries ``X-Request-Id``.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import identity
from services.common.db import Database
from services.common.errors import (
    INVALID_CREDENTIALS,
    ApiError,
    DeadlineExceeded,
    MethodNotAllowed,
    NotFound,
    Unauthenticated,
)
from services.common.params import read_body
from services.common.render import dumps, error_body, error_response
from services.common.settings import ServiceSettings

logger = logging.getLogger("services")
_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")

Handler = Callable[[Request], Awaitable[Response]]


def request_id_of(scope: Scope) -> str:
    return str(scope.get("state", {}).get("request_id", ""))


class EnvelopeMiddleware:
    """Pure ASGI: assign the request id, echo it, and turn any unexpected exception into a 500 envelope."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = ""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
        request_id = incoming if _REQUEST_ID_RE.fullmatch(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        header = (b"x-request-id", request_id.encode())
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            logger.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise
            body = dumps(error_body("internal_error", "Internal server error.", request_id))
            response = Response(body, status_code=500, media_type="application/json")
            await response(scope, receive, send_with_id)


@dataclass(frozen=True, kw_only=True, slots=True)
class Principal:
    user_id: int | None
    # none | invalid | identity: whether the caller sent an assertion, and whether it held.
    credentials: str = "none"
    # The assertion's scopes (a service-to-service call names its own, e.g. ``payments``).
    scopes: tuple[str, ...] = ()


def _user_id(subject: str) -> int | None:
    return int(subject) if subject.isascii() and subject.isdigit() and len(subject) <= 18 else None


def _verified(request: Request, body: bytes) -> Principal:
    """Identity comes only from the gateway's assertion; anything invalid is anonymous.

    The assertion is checked against the raw path, the raw query string and the exact body
    this service received, so one captured for another request does not verify."""
    settings: ServiceSettings = request.app.state.settings
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    try:
        asserted = identity.verify(
            settings.identity_secret,
            request.headers,
            method=request.method,
            path=raw_path.decode("latin-1"),
            query=request.scope.get("query_string", b"").decode("latin-1"),
            body=body,
            accept_v1=settings.identity_accept_v1,
        )
    except identity.IdentityError:
        return Principal(user_id=None, credentials="invalid")
    if not asserted.is_authenticated:
        return Principal(user_id=None, credentials="identity", scopes=asserted.scopes)
    user_id = _user_id(asserted.user_id)
    if user_id is None:
        return Principal(user_id=None, credentials="invalid")
    return Principal(user_id=user_id, credentials="identity", scopes=asserted.scopes)


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A receive that hands out ``body`` (already read) once, then defers to the real one (disconnects)."""
    pending = True

    async def replay() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def principal_of(request: Request) -> Principal:
    """Who the caller is, as ``methods`` verified it before the handler ran."""
    principal = getattr(request.state, "principal", None)
    if isinstance(principal, Principal):
        return principal
    # Not verified (a handler reached some other way): an assertion present is not trusted.
    return Principal(
        user_id=None, credentials="invalid" if identity.HEADER_SIGNATURE in request.headers else "none"
    )


def require_user(request: Request) -> int:
    principal = principal_of(request)
    if principal.user_id is None:
        raise (
            Unauthenticated(INVALID_CREDENTIALS) if principal.credentials == "invalid" else Unauthenticated()
        )
    return principal.user_id


class methods:  # lower-case: reads as a function at the call site, methods(GET=list, POST=create)
    """One path, one handler per method; HEAD follows GET; anything else is a 405 with ``Allow``.

    An ASGI app rather than a function, so Starlette hands it every method instead of
    answering 405 itself (in its own format) for methods it was not told about.
    """

    def __init__(self, **handlers: Handler) -> None:
        self.handlers = handlers
        self.allowed = set(handlers) | ({"HEAD"} if "GET" in handlers else set())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        if identity.deadline_passed(request.headers.get(identity.HEADER_DEADLINE)):
            # The gateway has stopped waiting for this answer: refuse before reading the body,
            # verifying or running the handler. Honoured unsigned, as in the monolith's
            # DeadlineMiddleware: a past deadline can only make us skip the request carrying it.
            raise DeadlineExceeded()
        handler = self.handlers.get("GET" if request.method == "HEAD" else request.method)
        if handler is None:
            raise MethodNotAllowed(request.method, self.allowed)
        if identity.HEADER_SIGNATURE in request.headers:
            # The signature covers the body: read it once here (within the size limit), verify,
            # and hand the handler a request whose receive replays the same bytes for its own reads.
            # The whole body for the digest the assertion signs, within the same 413 limit as a
            # handler's own read, so a huge body is never held just to verify it.
            body = await read_body(request, settings_of(request).max_body_bytes)
            receive = _replaying(body, receive)
            request = Request(scope, receive)
            request.state.principal = _verified(request, body)
        response = await handler(request)
        await response(scope, receive, send)


def db_of(request: Request) -> Database:
    database: Database = request.app.state.db
    return database


def settings_of(request: Request) -> ServiceSettings:
    settings: ServiceSettings = request.app.state.settings
    return settings


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc, request_id_of(request.scope))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        error: ApiError = NotFound(f"No route for {request.method} {request.url.path}.")
    else:  # Starlette raises nothing else for our routes; keep its status, in our envelope.
        error = ApiError(exc.detail)
        error.status = exc.status_code
        error.code = "http_error"
    return error_response(error, request_id_of(request.scope))


async def health(request: Request) -> Response:
    """Ready when the database answers."""
    async with db_of(request).read() as conn:
        await conn.exec_driver_sql("SELECT 1")
    return Response(dumps({"status": "ok"}), media_type="application/json")


Extension = Callable[[Starlette], AbstractAsyncContextManager[None]]


def build_app(
    settings: ServiceSettings, routes: Sequence[tuple[str, methods]], extension: Extension | None = None
) -> Starlette:
    """``extension``: a service's own start-up and shutdown, run inside the database's lifespan
    (the payments service creates its tables and starts its reconciliation there)."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.db = Database(settings.database_url, read_pool_size=settings.db_pool_size)
        try:
            if extension is None:
                yield
            else:
                async with extension(app):
                    yield
        finally:
            await app.state.db.dispose()

    app = Starlette(
        routes=[Route(path, endpoint) for path, endpoint in [*routes, ("/health", methods(GET=health))]],
        middleware=[Middleware(EnvelopeMiddleware)],
        exception_handlers={ApiError: _api_error, HTTPException: _http_error},
        lifespan=lifespan,
    )
    app.state.settings = settings
    # The monolith answers 404 for a trailing slash; so do we (no redirects).
    app.router.redirect_slashes = False
    return app
