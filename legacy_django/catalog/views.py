from django.http import HttpRequest, HttpResponse

from events.documents import BadIds, parse_item_ids
from legacy_django.catalog.selectors import catalog_documents
from legacy_django.common.errors import ValidationFailed
from legacy_django.common.params import parse_id
from legacy_django.common.responses import json_response


def item(request: HttpRequest, item_id: str) -> HttpResponse:
    return json_response(catalog_documents([parse_id(item_id, "item_id")])[0])


def items(request: HttpRequest) -> HttpResponse:
    try:
        item_ids = parse_item_ids(request.GET.get("ids"))
    except BadIds as bad:
        raise ValidationFailed({"ids": [str(bad)]}) from None
    return json_response({"items": catalog_documents(item_ids)})
