from django.urls import path

from legacy_django.common.views import methods
from legacy_django.content import views

urlpatterns = [
    path("api/v1/recommendations/home", methods(GET=views.home)),
    path("api/v1/recommendations/items/<str:item_id>/similar", methods(GET=views.similar)),
    path("api/v1/recommendations/recently-viewed", methods(GET=views.recently_viewed)),
]
