from django.contrib import admin
from django.http import HttpRequest, HttpResponsePermanentRedirect
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import TemplateView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from apps.core.health import healthz, readyz
from apps.pods import views as pod_views
from apps.portal.metrics_view import metrics
from apps.proxy.api import api as openai_api
from apps.sourcing.admin_views import upstream_health, upstream_reset

api_v1 = [
    path("", include("apps.accounts.urls")),
    path("", include("apps.nodes.urls")),
    path("", include("apps.billing.urls")),
    path("", include("apps.pods.urls")),
    path("", include("apps.podconnect.urls")),
    path("", include("apps.providers.urls")),
    path("", include("apps.sourcing.urls")),
    path("", include("apps.catalog.urls")),
    path("", include("apps.webhooks.urls")),
]


def favicon(request: HttpRequest) -> HttpResponsePermanentRedirect:
    # Resolved per request: with hashed static names the manifest exists only after
    # collectstatic, which must not be needed to import the URLconf.
    return HttpResponsePermanentRedirect(static("img/favicon.svg"))


urlpatterns = [
    path("", TemplateView.as_view(template_name="home.html"), name="home"),
    path("favicon.ico", favicon),
    path("gpus", pod_views.gpu_prices, name="gpus"),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics, name="metrics"),  # off unless configured: docs/observability.md
    # Operators' upstream health page, inside the admin (its login and staff check).
    path(
        "admin/upstream-health/",
        admin.site.admin_view(upstream_health),
        name="admin-upstream-health",
    ),
    path(
        "admin/upstream-health/<str:provider>/reset",
        admin.site.admin_view(upstream_reset),
        name="admin-upstream-reset",
    ),
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("api/v1/", include(api_v1)),
    path("webhooks/", include("apps.billing.webhook_urls")),
    path("v1/", openai_api.urls),
    path("voice/", include("apps.proxy.voice.urls")),
    # Customer portal pages (server-rendered; each app's web_urls.py).
    path("", include("apps.portal.web_urls")),
    path("", include("apps.accounts.web_urls")),
    path("billing/usage/", include("apps.pods.usage_urls")),  # pods' records, billing's menu
    path("billing/", include("apps.billing.web_urls")),
    path("pods/", include("apps.pods.web_urls")),
    path("pods/", include("apps.podconnect.web_urls")),
    path("models/", include("apps.catalog.web_urls")),
    path("provider/", include("apps.providers.web_urls")),
    path("settings/webhooks/", include("apps.webhooks.web_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
]

handler404 = "apps.core.errors.handler404"
handler500 = "apps.core.errors.handler500"
