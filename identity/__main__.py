"""Print the identity assertion headers for one request, one ``Name: value`` per line.

    python -m identity GET '/api/v1/reviews/items/1?size=3' --user 1
    python -m identity POST /api/v1/reviews --user 1 --data-binary @review.json

TARGET is the path with its query string, exactly as the client will send it (v2 signs both,
still percent-encoded). The body is signed too: give the same bytes the client will send,
``--data-binary TEXT`` or ``--data-binary @FILE`` (``@-``: standard input), and send them with
``curl --data-binary`` (curl's ``--data @FILE`` strips newlines, which changes the digest).
No ``--data-binary`` means an empty body. ``--deadline MS`` adds a signed ``X-Request-Deadline``
(absolute Unix milliseconds; ``--deadline-in SECONDS`` computes it from now).

    curl -H @<(python -m identity GET /api/v1/reviews/me --user 1) http://127.0.0.1:8002/api/v1/reviews/me

The secret comes from IDENTITY_SECRET (default: the development secret every server uses
unless told otherwise). For trying the services by hand and for QA; the gateway signs by itself.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from pathlib import Path

from identity import IdentityError, sign
from identity.dev import DEV_SECRET


def _body(data: str | None) -> bytes:
    """``--data-binary`` as curl reads it: ``@-`` is stdin, ``@FILE`` a file, anything else the text."""
    if data is None:
        return b""
    if data == "@-":
        return sys.stdin.buffer.read()
    if data.startswith("@"):
        return Path(data[1:]).read_bytes()
    return data.encode("utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m identity",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,  # "--data" must not quietly mean "--data-binary": curl's --data differs
    )
    parser.add_argument("method", help="HTTP method, e.g. GET")
    parser.add_argument("target", help="raw path plus query string, e.g. '/api/v1/reviews/items/1?size=3'")
    parser.add_argument(
        "--data-binary",
        "--body",
        dest="data",
        default=None,
        help="the exact request body: TEXT, @FILE or @- (stdin); default: no body",
    )
    parser.add_argument("--user", default="", help="user id (the token's sub); empty for anonymous")
    parser.add_argument(
        "--scopes", default=None, help="space-separated scopes (default: user when --user is given)"
    )
    parser.add_argument("--request-id", default=None, help="default: a random id")
    when = parser.add_mutually_exclusive_group()
    when.add_argument("--deadline", type=int, default=None, help="X-Request-Deadline: Unix milliseconds")
    when.add_argument("--deadline-in", type=float, default=None, help="X-Request-Deadline: now + SECONDS")
    args = parser.parse_args(argv)
    deadline = args.deadline
    if args.deadline_in is not None:
        deadline = int((time.time() + args.deadline_in) * 1000)
    scopes = args.scopes if args.scopes is not None else ("user" if args.user else "")
    path, _, query = args.target.partition("?")
    try:
        body = _body(args.data)
    except OSError as exc:
        print(f"cannot read the body: {exc}", file=sys.stderr)
        return 2
    try:
        headers = sign(
            os.environ.get("IDENTITY_SECRET", DEV_SECRET),
            method=args.method.upper(),
            path=path,
            query=query,
            body=body,
            user_id=args.user,
            scopes=scopes,
            request_id=args.request_id or uuid.uuid4().hex,
            deadline=deadline,
        )
    except IdentityError as exc:
        print(f"cannot sign: {exc}", file=sys.stderr)
        return 2
    for name, value in headers.items():
        print(f"{name}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
