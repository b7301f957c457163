from django.urls import path

from legacy_django.common.views import methods
from legacy_django.reviews import views

urlpatterns = [
    path("api/v1/reviews", methods(POST=views.create)),
    path("api/v1/reviews/me", methods(GET=views.mine)),
    path("api/v1/reviews/items/<str:item_id>", methods(GET=views.list_for_item)),
    path("api/v1/reviews/items/<str:item_id>/summary", methods(GET=views.summary)),
    path("api/v1/reviews/<str:review_id>", methods(GET=views.detail, DELETE=views.delete)),
    path("api/v1/reviews/<str:review_id>/helpful", methods(PUT=views.helpful)),
]
