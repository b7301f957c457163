from django.apps import AppConfig


class ReviewsConfig(AppConfig):
    name = "legacy_django.reviews"
    label = "reviews"
