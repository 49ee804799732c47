"""Portal pages for connecting to a pod: the terminal page and the connect page (proxied
ports, access tokens). Every query is scoped to the signed-in owner (another user's pod is a
404)."""

import uuid
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.core.middleware import STRICT_CSP
from apps.podconnect import services
from apps.podconnect.models import PodAccessToken
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


class TokenForm(forms.Form):
    name = forms.CharField(
        max_length=100, help_text="What it is for, e.g. “laptop notebook” or “CI smoke test”."
    )


def _access_context(request: HttpRequest, pod: Pod, **extra: Any) -> dict[str, Any]:
    base = request.build_absolute_uri("/").rstrip("/")
    ports = [
        {
            "name": name,
            "port": name.split("/")[0],
            "url": f"{base}/pods/{pod.pk}/ports/{name.split('/')[0]}/",
        }
        for name in sorted(pod.endpoints or {})
        if name.endswith("/tcp")
    ]
    return {
        "pod": pod,
        "ports": ports,
        "tokens": list(PodAccessToken.objects.filter(pod=pod)),
        "form": TokenForm(),
        **extra,
    }


@login_required
@require_http_methods(["GET", "POST"])
def access_page(request: HttpRequest, pod_id: uuid.UUID) -> HttpResponse:
    """The pod's proxied ports and its access tokens (a new token is shown once)."""
    pod = _owned(request, pod_id)
    if request.method == "POST":
        form = TokenForm(request.POST)
        if form.is_valid():
            issued = services.pod_token_create(
                user=request.user,  # type: ignore[arg-type]
                pod_id=pod.pk,
                name=form.cleaned_data["name"],
            )
            return render(
                request, "podconnect/access.html", _access_context(request, pod, created=issued)
            )
        return render(
            request, "podconnect/access.html", _access_context(request, pod, form=form), status=400
        )
    return render(request, "podconnect/access.html", _access_context(request, pod))


@login_required
@require_POST
def token_revoke(request: HttpRequest, pod_id: uuid.UUID, token_id: int) -> HttpResponse:
    pod = _owned(request, pod_id)
    try:
        token = services.pod_token_revoke(
            user=request.user,  # type: ignore[arg-type]
            pod_id=pod.pk,
            token_id=token_id,
        )
    except services.PodNotFoundError as exc:
        raise Http404 from exc
    messages.success(request, f"Revoked {token.name} ({token.prefix}…).")
    return redirect("podconnect:access", pod_id=pod.pk)
