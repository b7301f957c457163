from django.apps import AppConfig


class ActivationConfig(AppConfig):
    name = "legacy_django.activation"
    label = "activation"
