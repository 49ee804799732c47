"""An operators' page in the admin: each upstream cloud's health (circuit-breaker state, error
rate, latency, launches, offers in the book) and a reset for a blocked provider. Reads through
`selectors.provider_health`, resets through `registry.breaker_reset`, as the dashboard API
does; mounted by config/urls.py under /admin/ with the admin's own login and permission."""

from django.contrib import admin, messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.views.decorators.http import require_POST

from apps.sourcing import registry, selectors


def upstream_health(request: HttpRequest) -> HttpResponse:
    context = {
        **admin.site.each_context(request),
        "title": "Upstream provider health",
        "rows": selectors.provider_health(),
    }
    return TemplateResponse(request, "admin/upstream_health.html", context)


@require_POST
def upstream_reset(request: HttpRequest, provider: str) -> HttpResponse:
    if not request.user.is_superuser:
        raise Http404
    if provider not in registry.configured_providers():
        raise Http404(f"No configured provider named {provider!r}.")
    registry.breaker_reset(provider)
    messages.success(request, f"{provider}: reset; calls go through again.")
    return redirect("admin-upstream-health")
