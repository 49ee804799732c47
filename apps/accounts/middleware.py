"""MFA_REQUIRED_FOR_STAFF: a staff member's browser session reaches nothing but the account
pages (where the authenticator app is set up, and log out) until they have one.

The Django admin's own login form would skip the second factor, so it is replaced: /admin/login/
sends everyone to the portal's login (allauth), which asks for the TOTP code of users who have
one. Requests with API keys or JWTs are not sessions and are not affected."""

from collections.abc import Callable
from urllib.parse import urlencode

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from apps.core.errors import json_error

EXEMPT_PREFIXES = ("/accounts/", "/static/", "/healthz", "/readyz", "/favicon.ico")


def has_mfa(user: object) -> bool:
    from allauth.mfa.models import Authenticator

    return Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).exists()


class StaffMfaMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        path = request.path
        if path == reverse("admin:login"):
            query = urlencode({"next": request.GET.get("next") or reverse("admin:index")})
            return HttpResponseRedirect(f"{reverse('account_login')}?{query}")
        if not settings.MFA_REQUIRED_FOR_STAFF or path.startswith(EXEMPT_PREFIXES):
            return self.get_response(request)
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated or not user.is_staff or has_mfa(user):
            return self.get_response(request)
        if path.startswith(("/api/", "/v1/")):
            return json_error(
                status_code=403,
                code="mfa_required",
                message="Staff accounts must set up two-factor authentication first: "
                f"{settings.SITE_URL}{reverse('mfa_activate_totp')}",
            )
        query = urlencode({"next": request.get_full_path()})
        return HttpResponseRedirect(f"{reverse('mfa_activate_totp')}?{query}")
