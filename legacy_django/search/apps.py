from django.apps import AppConfig


class SearchConfig(AppConfig):
    name = "legacy_django.search"
    label = "search"
