from typing import Any

from django.db.models import Q

from legacy_django.common.pagination import PageRequest
from legacy_django.items.models import Item
from legacy_django.items.selectors import item_summaries


def item_search(query: str, page: PageRequest) -> tuple[list[dict[str, Any]], int]:
    """Items whose name or brand contains ``query`` (case-insensitive), by id."""
    queryset = Item.objects.filter(Q(name__icontains=query) | Q(brand__name__icontains=query))
    ids = list(queryset.order_by("id").values_list("id", flat=True)[page.offset : page.offset + page.size])
    return item_summaries(ids), queryset.count()
