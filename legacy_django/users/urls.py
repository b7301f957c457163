from django.urls import path

from legacy_django.common.views import methods
from legacy_django.users import views

urlpatterns = [
    path("api/v1/auth/token", methods(POST=views.token)),
    path(".well-known/jwks.json", methods(GET=views.jwks)),
    path("api/v1/users/me", methods(GET=views.me)),
]
