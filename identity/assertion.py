"""Sign and verify the v1 identity assertion (HMAC-SHA256, +/- 30 s)."""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote, unquote

HEADER_USER_ID = "x-user-id"
HEADER_SCOPES = "x-user-scopes"
HEADER_REQUEST_ID = "x-request-id"
HEADER_TIMESTAMP = "x-identity-timestamp"
HEADER_SIGNATURE = "x-identity-signature"
IDENTITY_HEADERS = (HEADER_USER_ID, HEADER_SCOPES, HEADER_REQUEST_ID, HEADER_TIMESTAMP, HEADER_SIGNATURE)

DEFAULT_SKEW_SECONDS = 30
_VERSION = "v1"
_SIGNATURE_RE = re.compile(r"v1=([0-9a-f]{64})")
_TIMESTAMP_RE = re.compile(r"[0-9]{1,12}")
_METHOD_RE = re.compile(r"[A-Z]{1,16}")
# Fields are joined with "\n"; a control character inside one could make two
# different assertions share a canonical string, so none are allowed.
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_SCOPES_RE = re.compile(r"[\x21-\x7e]+(?: [\x21-\x7e]+)*|")
_REQUEST_ID_RE = re.compile(r"[\x21-\x7e]{1,200}")

Secret = str | bytes


class IdentityError(Exception):
    """The assertion is missing or invalid; ``reason`` says which way."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True, kw_only=True, slots=True)
class Identity:
    """Who the gateway says the caller is. ``user_id`` is empty for anonymous."""

    user_id: str
    scopes: tuple[str, ...]
    request_id: str
    timestamp: int

    @property
    def is_authenticated(self) -> bool:
        return self.user_id != ""


def canonical_string(
    *, timestamp: int, method: str, path: str, user_id: str, scopes: str, request_id: str
) -> str:
    """The exact string the v1 signature covers."""
    return f"{_VERSION}\n{timestamp}\n{method}\n{path}\n{user_id}\n{scopes}\n{request_id}"


def _digest(secret: Secret, message: str) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).hexdigest()


def _check_fields(*, method: str, path: str, user_id: str, scopes: str, request_id: str) -> None:
    if not _METHOD_RE.fullmatch(method):
        raise IdentityError("malformed", "method must be upper-case letters")
    if not path.startswith("/") or _CONTROL_RE.search(path) or "?" in path:
        raise IdentityError("malformed", "path must be a raw path without query string")
    if _CONTROL_RE.search(user_id):
        raise IdentityError("malformed", "user id contains a control character")
    if not _SCOPES_RE.fullmatch(scopes):
        raise IdentityError("malformed", "scopes must be space-separated printable ASCII")
    if not _REQUEST_ID_RE.fullmatch(request_id):
        raise IdentityError("malformed", "request id must be 1-200 printable ASCII characters")


def sign(
    secret: Secret,
    *,
    method: str,
    path: str,
    user_id: str,
    scopes: str,
    request_id: str,
    timestamp: int | None = None,
) -> dict[str, str]:
    """Return the five assertion headers (lower-case names) for one request.

    Raises ``IdentityError("malformed")`` for fields that cannot be signed safely.
    """
    _check_fields(method=method, path=path, user_id=user_id, scopes=scopes, request_id=request_id)
    ts = int(time.time()) if timestamp is None else timestamp
    message = canonical_string(
        timestamp=ts, method=method, path=path, user_id=user_id, scopes=scopes, request_id=request_id
    )
    return {
        HEADER_USER_ID: quote(user_id, safe=""),
        HEADER_SCOPES: scopes,
        HEADER_REQUEST_ID: request_id,
        HEADER_TIMESTAMP: str(ts),
        HEADER_SIGNATURE: f"{_VERSION}={_digest(secret, message)}",
    }


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if value is None:
        raise IdentityError("missing", name)
    return value


def verify(
    secrets: Secret | Sequence[Secret],
    headers: Mapping[str, str],
    *,
    method: str,
    path: str,
    now: float | None = None,
    skew: int = DEFAULT_SKEW_SECONDS,
) -> Identity:
    """Check the assertion in ``headers`` for this request and return the identity.

    ``headers`` may use any letter case.  ``secrets`` may hold several secrets
    (rotation); any one of them may have signed.  Raises ``IdentityError``.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    signature = _header(lowered, HEADER_SIGNATURE)
    raw_ts = _header(lowered, HEADER_TIMESTAMP)
    raw_user = _header(lowered, HEADER_USER_ID)
    scopes = _header(lowered, HEADER_SCOPES)
    request_id = _header(lowered, HEADER_REQUEST_ID)

    match = _SIGNATURE_RE.fullmatch(signature)
    if match is None:
        raise IdentityError("malformed", "signature must be v1=<64 hex digits>")
    if not _TIMESTAMP_RE.fullmatch(raw_ts):
        raise IdentityError("malformed", "timestamp must be Unix seconds")
    try:
        user_id = unquote(raw_user, errors="strict")
    except UnicodeDecodeError as exc:
        raise IdentityError("malformed", "user id is not percent-encoded UTF-8") from exc
    _check_fields(method=method, path=path, user_id=user_id, scopes=scopes, request_id=request_id)

    ts = int(raw_ts)
    current = time.time() if now is None else now
    if ts < current - skew:
        raise IdentityError("expired", f"signed {int(current - ts)} s ago")
    if ts > current + skew:
        raise IdentityError("future", f"signed {int(ts - current)} s ahead")

    message = canonical_string(
        timestamp=ts, method=method, path=path, user_id=user_id, scopes=scopes, request_id=request_id
    )
    candidates = [secrets] if isinstance(secrets, str | bytes) else list(secrets)
    given = match.group(1)
    # Compare against every secret so timing does not tell which one matched.
    ok = False
    for secret in candidates:
        ok |= hmac.compare_digest(_digest(secret, message), given)
    if not ok:
        raise IdentityError("bad_signature")
    return Identity(user_id=user_id, scopes=tuple(scopes.split()), request_id=request_id, timestamp=ts)
