from django.conf import settings
from django.db import models

from legacy_django.items.models import Item


class ViewHistory(models.Model):
    """One row per item page view by a signed-in user (what recommendations learn from)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="views")
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="views")
    viewed_at = models.DateTimeField()

    class Meta:
        db_table = "activation_viewhistory"
        indexes = [models.Index(fields=["user", "-viewed_at"], name="view_user_recent_idx")]
