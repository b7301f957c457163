from django.apps import AppConfig


class SeedConfig(AppConfig):
    name = "legacy_django.seed"
    label = "seed"
