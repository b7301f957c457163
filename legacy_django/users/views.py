import hashlib

from django.http import HttpRequest, HttpResponse
from django.utils.cache import get_conditional_response

from legacy_django.common.auth import require_user
from legacy_django.common.params import parse_credentials_form
from legacy_django.common.responses import json_response, timestamp
from legacy_django.common.signing_keys import get_key_store
from legacy_django.users.selectors import user_get_active
from legacy_django.users.services import token_issue


def token(request: HttpRequest) -> HttpResponse:
    body = token_issue(request, parse_credentials_form(request))
    return json_response(body, headers={"Cache-Control": "no-store"})


def jwks(request: HttpRequest) -> HttpResponse:
    """The public keys, with an ETag: gateways poll every few seconds with ``If-None-Match`` and an
    unchanged set costs a 304. Caches must revalidate every time, so a retired key disappears at once."""
    response = json_response(
        get_key_store().current().jwks(), headers={"Cache-Control": "public, max-age=0, must-revalidate"}
    )
    response["ETag"] = f'"{hashlib.sha256(response.content).hexdigest()[:32]}"'
    return get_conditional_response(request, etag=response["ETag"], response=response)


def me(request: HttpRequest) -> HttpResponse:
    user = user_get_active(require_user(request))
    return json_response(
        {
            "id": user.pk,
            "username": user.username,
            "display_name": user.display_name,
            "joined_at": timestamp(user.date_joined),
        }
    )
