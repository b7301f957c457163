from django.urls import include, path

from legacy_django.common.views import health, methods

urlpatterns = [
    path("", include("legacy_django.users.urls")),
    path("", include("legacy_django.items.urls")),
    path("", include("legacy_django.commerce.urls")),
    path("", include("legacy_django.activation.urls")),
    path("", include("legacy_django.reviews.urls")),
    path("", include("legacy_django.search.urls")),
    path("", include("legacy_django.content.urls")),
    path("", include("legacy_django.catalog.urls")),
    path("health", methods(GET=health)),
]

handler400 = "legacy_django.common.views.bad_request"
handler403 = "legacy_django.common.views.forbidden"
handler404 = "legacy_django.common.views.not_found"
handler500 = "legacy_django.common.views.server_error"
