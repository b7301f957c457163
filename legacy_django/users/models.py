from django.contrib.auth.models import AbstractUser
from django.db import models


class User(AbstractUser):
    """A shop customer; ``display_name`` is what reviews show."""

    display_name = models.CharField(max_length=100, blank=True)

    class Meta:
        db_table = "users_user"
