"""WebSocket routes of the terminal (config/routing.py includes them)."""

from channels.auth import AuthMiddlewareStack
from django.urls import URLPattern, path

from apps.podconnect.terminal import TerminalAgentConsumer, TerminalBrowserConsumer

websocket_urlpatterns: list[URLPattern] = [
    # The owner's browser, by session cookie (and the Origin check of config/asgi.py).
    path(
        "ws/pods/<uuid:pod_id>/terminal",
        AuthMiddlewareStack(TerminalBrowserConsumer.as_asgi()),
    ),
    # The pod's agent, by node token + the session's one-time token.
    path("ws/agent/terminal/<uuid:session_id>", TerminalAgentConsumer.as_asgi()),
]
