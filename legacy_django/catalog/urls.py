from django.urls import path

from legacy_django.catalog import views
from legacy_django.common.views import methods

urlpatterns = [
    path("api/v1/catalog/items", methods(GET=views.items)),
    path("api/v1/catalog/items/<str:item_id>", methods(GET=views.item)),
]
