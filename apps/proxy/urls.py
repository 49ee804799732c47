"""The URLs the `/v1` handler resolves against (apps/proxy/asgi.py): only the proxy's, so a
request is not matched against the whole site's patterns first. config/urls.py mounts the same
API for the site's own handler (tests, WSGI)."""

from django.urls import path

from apps.proxy.api import api

urlpatterns = [path("v1/", api.urls)]

handler404 = "apps.proxy.api.not_found"
handler500 = "apps.core.errors.handler500"
