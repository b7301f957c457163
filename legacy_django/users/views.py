from django.http import HttpRequest, HttpResponse

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
    return json_response(get_key_store().current().jwks(), headers={"Cache-Control": "public, max-age=300"})


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
