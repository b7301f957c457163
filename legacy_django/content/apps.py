from django.apps import AppConfig


class ContentConfig(AppConfig):
    name = "legacy_django.content"
    label = "content"
