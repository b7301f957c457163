from django.apps import AppConfig


class CatalogConfig(AppConfig):
    name = "legacy_django.catalog"
    label = "catalog"
