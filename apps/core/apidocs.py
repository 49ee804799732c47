"""Swagger UI for the ninja API (`/v1/docs`) from our own static files: the swagger-ui-dist
build that drf-spectacular-sidecar pins and `/api/docs` already serves, started by a script file
(static/js/swagger-init.js). No CDN and no inline script, so the page runs under a
Content-Security-Policy whose scripts come from this site only (SecureEdge's docs CSP).
Import it only after settings are loaded (ninja needs them)."""

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from ninja.openapi.docs import DocsBase


class LocalSwagger(DocsBase):
    template = "api/swagger_ui.html"

    def render_page(self, request: HttpRequest, api: Any, **kwargs: Any) -> HttpResponse:
        context = {"title": api.title, "schema_url": self.get_openapi_url(api, kwargs)}
        return render(request, self.template, context)
