"""Which scope a personal API key needs for a `/api/v1` request.

Every API view belongs to one area: a view may say so itself (`api_key_scope = "pods"`),
otherwise its app decides (`AREA_OF_APP`). A safe request (GET, HEAD, OPTIONS) is allowed by
the `read` scope or by the area's own scope; any other request needs the area's scope. Views
of the account itself (API keys, SSH keys, webhooks) and any view of an app not listed are
`FULL`: writing to them needs every scope, so a narrow key can never mint a wider one.
Public views (every permission class `AllowAny`) need no scope.

The check runs where the key is authenticated (`apps.accounts.authentication`), so it also
covers views that replace the default permission classes (providers, operators' views)."""

from typing import Any

from rest_framework import exceptions
from rest_framework.permissions import SAFE_METHODS, AllowAny

from apps.accounts.models import ApiKey, ApiKeyScope, all_scopes

FULL = "*"
AREA_OF_APP = {
    "pods": ApiKeyScope.PODS,
    "podconnect": ApiKeyScope.PODS,
    "nodes": ApiKeyScope.PODS,
    "sourcing": ApiKeyScope.PODS,
    "catalog": ApiKeyScope.MODELS,
    "proxy": ApiKeyScope.MODELS,
    "billing": ApiKeyScope.BILLING,
    "providers": ApiKeyScope.BILLING,
}


class InsufficientScope(exceptions.PermissionDenied):
    default_code = "insufficient_scope"

    def __init__(self, scope: str) -> None:
        super().__init__(f"this API key lacks the '{scope}' scope", code="insufficient_scope")


def area_of(view: Any) -> str | None:
    """The view's scope, FULL, or None for a public view."""
    explicit = getattr(view, "api_key_scope", None)
    if explicit:
        return str(explicit)
    permissions = getattr(view, "permission_classes", None) or []
    if permissions and all(p is AllowAny for p in permissions):
        return None
    parts = type(view).__module__.split(".")
    app = parts[1] if len(parts) > 1 and parts[0] == "apps" else ""
    return AREA_OF_APP.get(app, FULL)


def missing_scope(scopes: list[str] | tuple[str, ...], *, area: str | None, method: str) -> str:
    """The scope to name in a 403, or "" when `scopes` allow the request."""
    if area is None:
        return ""
    if method.upper() in SAFE_METHODS:
        if ApiKeyScope.READ in scopes or (area != FULL and area in scopes):
            return ""
        return ApiKeyScope.READ.value
    if area == FULL:
        return next((s for s in all_scopes() if s not in scopes), "")
    return "" if area in scopes else area


def check_api_key_scope(api_key: ApiKey, request: Any) -> None:
    """Raise InsufficientScope (403) when `api_key` may not make this request."""
    view = (getattr(request, "parser_context", None) or {}).get("view")
    if view is None:
        return
    missing = missing_scope(api_key.scopes, area=area_of(view), method=request.method)
    if missing:
        raise InsufficientScope(missing)
