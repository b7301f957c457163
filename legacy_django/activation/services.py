from django.utils import timezone

from legacy_django.activation.models import ViewHistory
from legacy_django.items.selectors import item_get


def view_record(user_id: int, item_id: int) -> ViewHistory:
    item = item_get(item_id)
    return ViewHistory.objects.create(user_id=user_id, item=item, viewed_at=timezone.now())
