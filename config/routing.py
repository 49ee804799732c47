"""WebSocket routes (`/ws/*`)."""

from django.urls import URLPattern, path

from apps.podconnect.routing import websocket_urlpatterns as podconnect_routes
from apps.proxy.voice.auth import DeploymentKeyAuthMiddleware
from apps.proxy.voice.consumers import (
    SpeechConsumer,
    TranscriptionConsumer,
    VoiceAgentConsumer,
)

websocket_urlpatterns: list[URLPattern] = [
    # Real-time voice (apps/proxy/voice), authenticated by deployment key.
    path(
        "ws/audio/transcriptions",
        DeploymentKeyAuthMiddleware(TranscriptionConsumer.as_asgi()),
    ),
    path("ws/audio/speech", DeploymentKeyAuthMiddleware(SpeechConsumer.as_asgi())),
    path("ws/voice-agent", DeploymentKeyAuthMiddleware(VoiceAgentConsumer.as_asgi())),
]
# The browser terminal of a pod (apps/podconnect).
websocket_urlpatterns += podconnect_routes
