from django.contrib import admin
from django.urls import include, path
from django.views.generic import TemplateView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from apps.core.health import healthz, readyz
from apps.proxy.api import api as openai_api

api_v1 = [
    path("", include("apps.accounts.urls")),
    path("", include("apps.nodes.urls")),
    path("", include("apps.billing.urls")),
    path("", include("apps.pods.urls")),
    path("", include("apps.providers.urls")),
    path("", include("apps.sourcing.urls")),
    path("", include("apps.catalog.urls")),
]

urlpatterns = [
    path("", TemplateView.as_view(template_name="home.html"), name="home"),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("api/v1/", include(api_v1)),
    path("webhooks/", include("apps.billing.webhook_urls")),
    path("v1/", openai_api.urls),
    path("voice/", include("apps.proxy.voice.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
]

handler404 = "apps.core.errors.handler404"
handler500 = "apps.core.errors.handler500"
