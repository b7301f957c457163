from django.apps import AppConfig


class CommerceConfig(AppConfig):
    name = "legacy_django.commerce"
    label = "commerce"
