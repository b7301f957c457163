"""Print the identity assertion headers for one request, one ``Name: value`` per line.

    python -m identity GET /api/v1/recommendations/home --user 1
    curl -H @<(python -m identity GET /api/v1/reviews/me --user 1) http://127.0.0.1:8002/api/v1/reviews/me

The secret comes from IDENTITY_SECRET (default: the development secret every server uses
unless told otherwise). For trying the services by hand and for QA; the gateway signs by itself.
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid

from identity import IdentityError, sign

DEV_SECRET = "dev-only-identity-secret"  # noqa: S105 - the documented development default


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m identity", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("method", help="HTTP method, e.g. GET")
    parser.add_argument("path", help="raw request path without the query string")
    parser.add_argument("--user", default="", help="user id (the token's sub); empty for anonymous")
    parser.add_argument(
        "--scopes", default=None, help="space-separated scopes (default: user when --user is given)"
    )
    parser.add_argument("--request-id", default=None, help="default: a random id")
    args = parser.parse_args(argv)
    scopes = args.scopes if args.scopes is not None else ("user" if args.user else "")
    try:
        headers = sign(
            os.environ.get("IDENTITY_SECRET", DEV_SECRET),
            method=args.method.upper(),
            path=args.path,
            user_id=args.user,
            scopes=scopes,
            request_id=args.request_id or uuid.uuid4().hex,
        )
    except IdentityError as exc:
        print(f"cannot sign: {exc}", file=sys.stderr)
        return 2
    for name, value in headers.items():
        print(f"{name}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
