"""Portal pages for connecting to a pod: the terminal page and the connect page (proxied
ports, access tokens). Every query is scoped to the signed-in owner (another user's pod is a
404)."""

import uuid

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from apps.core.middleware import STRICT_CSP
from apps.pods.models import Pod

# xterm.js writes its theme and cell metrics into <style> elements it creates: the terminal
# page allows inline styles (scripts still come only from us).
TERMINAL_CSP = STRICT_CSP.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")


def _owned(request: HttpRequest, pod_id: uuid.UUID) -> Pod:
    return get_object_or_404(Pod.objects.for_user(request.user).select_related("node"), pk=pod_id)


@login_required
@require_GET
def terminal(request: HttpRequest, pod_id: uuid.UUID) -> HttpResponse:
    pod = _owned(request, pod_id)
    response = render(request, "podconnect/terminal.html", {"pod": pod})
    response["Content-Security-Policy"] = TERMINAL_CSP
    return response
