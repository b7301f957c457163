from django.http import HttpRequest, HttpResponse

from legacy_django.activation.services import view_record
from legacy_django.common.auth import require_user
from legacy_django.common.params import parse_id
from legacy_django.common.responses import json_response, timestamp
from legacy_django.users.selectors import user_get_active


def record_view(request: HttpRequest, item_id: str) -> HttpResponse:
    user = user_get_active(require_user(request))
    view = view_record(user.pk, parse_id(item_id, "item_id"))
    return json_response({"item_id": view.item_id, "viewed_at": timestamp(view.viewed_at)}, status=201)
