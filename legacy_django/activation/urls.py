from django.urls import path

from legacy_django.activation import views
from legacy_django.common.views import methods

urlpatterns = [
    path("api/v1/items/<str:item_id>/views", methods(POST=views.record_view)),
]
