from django.urls import path

from legacy_django.common.views import methods
from legacy_django.items import views

urlpatterns = [
    path("api/v1/items", methods(GET=views.list_items)),
    path("api/v1/items/<str:item_id>", methods(GET=views.detail)),
]
