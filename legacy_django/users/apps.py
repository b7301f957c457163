from django.apps import AppConfig


class UsersConfig(AppConfig):
    name = "legacy_django.users"
    label = "users"
