from django.apps import AppConfig


class ItemsConfig(AppConfig):
    name = "legacy_django.items"
    label = "items"
