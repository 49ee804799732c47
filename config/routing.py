"""WebSocket routes (`/ws/*`). The voice consumers register here when they land."""

from django.urls import URLPattern

websocket_urlpatterns: list[URLPattern] = []
