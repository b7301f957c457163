from django.urls import path

from legacy_django.common.views import methods
from legacy_django.search import views

urlpatterns = [path("api/v1/search/items", methods(GET=views.search_items))]
