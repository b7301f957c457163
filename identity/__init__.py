"""The signed identity assertion sent by the gateway to every backend.

The gateway authenticates the user once (JWT) and forwards who the user is as
plain headers plus an HMAC-SHA256 signature over a canonical string, so no
backend verifies a JWT again.  This package owns signing and verifying that
assertion and nothing else; it depends on the standard library only.

Headers (see ``docs/identity.md``)::

    X-User-Id             percent-encoded user id (empty for anonymous)
    X-User-Scopes         space-separated scopes, as in the token
    X-Request-Id          the request id
    X-Identity-Timestamp  Unix seconds when the gateway signed
    X-Identity-Signature  v2=<hex HMAC-SHA256(secret, canonical string)>
    X-Request-Deadline    optional: Unix milliseconds after which the gateway stops waiting

Canonical string (v2)::

    "v2\\n{ts}\\n{METHOD}\\n{path}\\n{query}\\n{body_sha256}\\n{user_id}\\n{scopes}\\n{request_id}\\n{deadline}"

``path`` and ``query`` are the raw request-line text, ``body_sha256`` the hex SHA-256 of
the exact body bytes: a captured assertion is good for nothing but the identical request
(same method, path, query, body) within the skew. ``deadline`` is the ``X-Request-Deadline``
value (empty when there is none), so it cannot be moved either; ``deadline_passed`` tells a
backend that a request's deadline is over.  ``verify`` refuses ``v1=`` signatures (which bound
neither query nor body) unless ``accept_v1``.

Exceptions::

    IdentityError(reason)       base; ``reason`` is a short machine-readable word
        missing              a required header is absent
        malformed            a header does not have the expected shape
        unsupported_version  a v1 signature while v1 is not accepted
        expired              the timestamp is older than the allowed skew
        future               the timestamp is ahead by more than the allowed skew
        bad_signature        the signature does not match any secret
"""

from identity.assertion import (
    DEFAULT_SKEW_SECONDS,
    HEADER_DEADLINE,
    HEADER_REQUEST_ID,
    HEADER_SCOPES,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    HEADER_USER_ID,
    IDENTITY_HEADERS,
    VERSION,
    Identity,
    IdentityError,
    body_sha256,
    canonical_string,
    deadline_passed,
    parse_deadline,
    sign,
    sign_headers,
    verify,
)

__all__ = [
    "DEFAULT_SKEW_SECONDS",
    "HEADER_DEADLINE",
    "HEADER_REQUEST_ID",
    "HEADER_SCOPES",
    "HEADER_SIGNATURE",
    "HEADER_TIMESTAMP",
    "HEADER_USER_ID",
    "IDENTITY_HEADERS",
    "VERSION",
    "Identity",
    "IdentityError",
    "body_sha256",
    "canonical_string",
    "deadline_passed",
    "parse_deadline",
    "sign",
    "sign_headers",
    "verify",
]
