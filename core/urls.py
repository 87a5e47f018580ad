"""URL routes: the Audit Logs page (/audit-logs/, where / leads), the GraphQL API and
GraphiQL (/graphql/), file exports (/audit-logs/export), the JSON Schema of event details
(/schemas/audit-details.json), sign-in for the browser
(/accounts/), and the Django admin for operators (/admin/)."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path
from django.views.generic import RedirectView

from audit.details import SCHEMA_URL_PATH
from core.csp import with_page_csp
from graphql_api.exports import export_view
from graphql_api.pages import audit_logs_page, details_schema
from graphql_api.views import graphql_view

urlpatterns = [
    path("", RedirectView.as_view(url="/audit-logs/", permanent=False)),
    path("audit-logs/", audit_logs_page, name="audit-logs"),
    path("graphql/", graphql_view, name="graphql"),
    path("audit-logs/export", export_view, name="audit-logs-export"),
    path(SCHEMA_URL_PATH.lstrip("/"), details_schema, name="audit-details-schema"),
    path(
        "accounts/login/",
        with_page_csp(auth_views.LoginView.as_view(redirect_authenticated_user=True)),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
]
