"""ASGI entry point: HTTP through Django, WebSockets (`/ws/*`) through Channels."""

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from apps.core.asgi import (  # noqa: E402
    BoundedConcurrency,
    BrowserOriginValidator,
    BufferedChunkedBody,
)
from apps.core.observability import RequestContextASGI  # noqa: E402
from apps.nodes.heartbeat_asgi import LeanHeartbeat  # noqa: E402
from apps.podconnect.portproxy import PortProxyRouter  # noqa: E402
from apps.pods.logs_wait import PodLogsWaiter  # noqa: E402
from apps.proxy.asgi import ProxyRouter  # noqa: E402
from config.routing import websocket_urlpatterns  # noqa: E402

# The agents' heartbeats are served on the event loop, one statement each, ahead of everything
# below; a beat that path does not serve goes on to Django as before (apps/nodes/heartbeat_asgi.py).
heartbeats = LeanHeartbeat(
    # /v1 (the model proxy) bypasses the bound and the sync middleware: apps/proxy/asgi.py.
    # GET /api/v1/pods/{id}/logs waits for the agent outside the bound, in the event loop:
    # apps/pods/logs_wait.py. A chunked body is read (and capped) before the request takes one
    # of the bound's slots. RequestContextASGI: /v1's request id and arrival time
    # (docs/observability.md).
    RequestContextASGI(
        ProxyRouter(
            PodLogsWaiter(
                BufferedChunkedBody(
                    BoundedConcurrency(
                        django_asgi_app,
                        settings.WEB_MAX_CONCURRENT_REQUESTS,
                        queue_timeout_s=settings.WEB_QUEUE_TIMEOUT_S,
                    )
                )
            )
        )
    )
)

# /pods/{id}/ports/{port}/… (the pod port proxy, HTTP and WebSocket) is served ahead of all
# of it, like /v1: no bound, no sync middleware, no site headers (apps/podconnect/portproxy.py).
application = PortProxyRouter(
    ProtocolTypeRouter(
        {
            "http": heartbeats,
            "websocket": BrowserOriginValidator(URLRouter(websocket_urlpatterns)),
        }
    )
)

# Everything imported by now lives as long as the process: take it out of the cyclic
# collector's sight, so a full collection stops walking ~130k start-up objects (79 ms measured,
# the web process's worst pause; bench/voice.py's tail latency).
gc.freeze()
