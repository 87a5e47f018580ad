"""URL routes: the Django admin (operators). The GraphQL endpoint joins at /graphql/."""

from django.contrib import admin
from django.urls import path

urlpatterns = [
    path("admin/", admin.site.urls),
]
