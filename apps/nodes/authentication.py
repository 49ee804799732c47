"""Agents authenticate with their node token in `X-Agent-API-Key`. The authenticated
principal is the Node (request.auth); request.user stays anonymous. Every refused agent
credential (node token, registration token, stale or replayed heartbeat) is logged on
`apps.nodes.refusals` with the node, the reason and the source address."""

import logging
from typing import Any

from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest
from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request

from apps.core.middleware import client_ip
from apps.core.secrets import secret_digest
from apps.nodes.models import Node, NodeStatus
from apps.nodes.registration import credential_prefix

HEADER = "HTTP_X_AGENT_API_KEY"
refusals = logging.getLogger("apps.nodes.refusals")


def log_refusal(
    request: HttpRequest | Request, *, node: object, credential: str, reason: str
) -> None:
    """One line per refused agent credential: who (node id or "unknown"), which credential
    (its first characters only), why, and from where."""
    source = client_ip(request)
    refusals.warning(
        "agent credential refused: node=%s credential=%s reason=%s source=%s path=%s",
        node or "unknown",
        credential or "-",
        reason,
        source,
        request.path,
        extra={"node": str(node or ""), "reason": reason, "source_ip": source},
    )


class NodeTokenAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[Any, Node] | None:
        raw = request.META.get(HEADER, "").strip()
        if not raw:
            return None
        node = Node.objects.filter(token_digest=secret_digest(raw)).first()
        if node is None or node.status == NodeStatus.RETIRED:
            log_refusal(
                request,
                node=node.pk if node else None,
                credential=credential_prefix(raw),
                reason="token of a retired node" if node else "unknown or revoked node token",
            )
            raise exceptions.AuthenticationFailed("Unknown or revoked node token; re-register.")
        return AnonymousUser(), node

    def authenticate_header(self, request: Request) -> str:
        return 'AgentKey realm="nodes", header="X-Agent-API-Key"'


class IsAgent(permissions.BasePermission):
    message = "This endpoint is for node agents (X-Agent-API-Key)."

    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.auth, Node)


def rate_limit_identity(request: HttpRequest) -> str | None:
    """For the rate limiter (RATE_LIMIT_IDENTITY_RESOLVERS): "node:<id>" for a valid node
    token, None otherwise."""
    raw = request.META.get(HEADER, "").strip()
    if not raw:
        return None
    node_id = (
        Node.objects.filter(token_digest=secret_digest(raw))
        .exclude(status=NodeStatus.RETIRED)
        .values_list("pk", flat=True)
        .first()
    )
    return None if node_id is None else f"node:{node_id}"
