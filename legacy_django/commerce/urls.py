from django.urls import path

from legacy_django.commerce import views
from legacy_django.common.views import methods

urlpatterns = [
    path("api/v1/orders", methods(GET=views.list_orders, POST=views.create_order)),
    path("api/v1/orders/<str:order_id>", methods(GET=views.detail)),
    path("api/v1/orders/<str:order_id>/payment", methods(POST=views.pay)),
]
