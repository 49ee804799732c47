"""Second factor for staff.

- MFA_REQUIRED_FOR_STAFF: a staff member's browser session reaches nothing but the account
  pages (where the authenticator app is set up, and log out) until they have one; API calls
  made with that session get 403 `mfa_required`. Requests with API keys or JWTs are not
  sessions and are not affected.
- Always: the Django admin's own login form checks only the password, so a user with an
  authenticator who signs in there is signed out again and sent to the portal's login
  (allauth), which asks for the code."""

from collections.abc import Callable
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
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
        if path == reverse("admin:login") and request.method == "POST":
            return self._admin_login(request)
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
        messages.info(request, "Staff accounts need two-factor authentication: set it up first.")
        return HttpResponseRedirect(reverse("mfa_activate_totp"))

    def _admin_login(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and has_mfa(user):
            logout(request)
            messages.info(request, "Your account has two-factor authentication: sign in here.")
            query = urlencode({"next": request.GET.get("next") or reverse("admin:index")})
            return HttpResponseRedirect(f"{reverse('account_login')}?{query}")
        return response
