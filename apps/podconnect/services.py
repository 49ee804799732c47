"""Writes for connecting to pods: terminal sessions (open, attach the agent, close) and the
port proxy's access tokens (create, revoke). Keyword-only, one transaction each."""

import uuid
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.accounts.models import User
from apps.core.secrets import secret_issue, secret_matches
from apps.nodes import services as node_services
from apps.nodes.models import CommandType, Node, NodeCommand, NodeStatus
from apps.podconnect import access
from apps.podconnect.locks import (
    lock_opening_session_of_command,
    lock_pod_token,
    lock_terminal_session,
)
from apps.podconnect.models import PodAccessToken, TerminalSession, TerminalStatus
from apps.pods.models import Pod, PodEvent, PodStatus

TERMINAL_TOKEN_PREFIX = "tt_"  # noqa: S105 - a prefix, not a secret
POD_TOKEN_PREFIX = "pt_"  # noqa: S105 - a prefix, not a secret


class PodNotFoundError(Exception):
    """No such pod for this user (another user's pod is not found either)."""


class TerminalRefusedError(Exception):
    """The owner's pod cannot take a terminal now; the message says why."""


class TerminalAttachRefusedError(Exception):
    """An agent's terminal socket that does not match a session waiting for it."""


@transaction.atomic
def terminal_open(*, user: User, pod_id: uuid.UUID, browser_channel: str) -> TerminalSession:
    """Ask the pod's agent for a shell: a session waiting for the agent, an OPEN_TERMINAL
    command carrying its one-time token (the agent sees it on its next heartbeat), and a pod
    event naming who opened it."""
    pod = Pod.objects.for_user(user).select_related("node").filter(pk=pod_id).first()
    if pod is None:
        raise PodNotFoundError(str(pod_id))
    if pod.status != PodStatus.RUNNING or pod.node is None:
        raise TerminalRefusedError(
            f"The pod is {pod.status.lower()}: a terminal opens on a running pod."
        )
    if pod.node.status not in (NodeStatus.ONLINE, NodeStatus.DRAINING):
        raise TerminalRefusedError(f"The pod's node is {pod.node.status.lower()}.")
    issued = secret_issue(prefix=TERMINAL_TOKEN_PREFIX)
    session = TerminalSession.objects.create(
        pod=pod,
        user=user,
        node=pod.node,
        token_digest=issued.digest,
        browser_channel=browser_channel,
    )
    command = node_services.command_enqueue(
        node=pod.node,
        type=CommandType.OPEN_TERMINAL,
        payload={"pod_id": str(pod.pk), "session_id": str(session.pk), "token": issued.raw},
    )
    session.command_id = command.pk
    session.save(update_fields=["command_id"])
    PodEvent.objects.create(
        pod=pod,
        from_status=pod.status,
        to_status=pod.status,
        reason=f"terminal session {session.pk} opened by {user.email}",
    )
    return session


@transaction.atomic
def terminal_attach(
    *, session_id: uuid.UUID, node_token: str, terminal_token: str
) -> TerminalSession:
    """The agent dialled in for `session_id`: check both its node token and the session's
    one-time token (unused, within POD_TERMINAL_OPEN_TIMEOUT_S), mark the session OPEN and wipe
    the token from the command that carried it."""
    # Locked: two sockets presenting the same token race for one session; one wins.
    session = lock_terminal_session(session_id)
    if session is None:
        raise TerminalAttachRefusedError("no such terminal session")
    node: Node = session.node
    if node.status == NodeStatus.RETIRED or not secret_matches(node_token, node.token_digest):
        raise TerminalAttachRefusedError("node token does not match the session's node")
    if not secret_matches(terminal_token, session.token_digest):
        raise TerminalAttachRefusedError("terminal token does not match")
    if session.status != TerminalStatus.OPENING:
        raise TerminalAttachRefusedError(f"session is {session.status.lower()}")
    deadline = session.created_at + timedelta(seconds=settings.POD_TERMINAL_OPEN_TIMEOUT_S)
    now = timezone.now()
    if now > deadline:
        raise TerminalAttachRefusedError("terminal token expired")
    session.status = TerminalStatus.OPEN
    session.connected_at = now
    session.save(update_fields=["status", "connected_at"])
    command = (
        NodeCommand.objects.filter(pk=session.command_id).first() if session.command_id else None
    )
    if command is not None and command.payload.get("token"):
        NodeCommand.objects.filter(pk=command.pk).update(payload={**command.payload, "token": ""})
    return session


@transaction.atomic
def terminal_close(*, session_id: uuid.UUID, reason: str) -> None:
    """Record the end of a session once (the first reason wins)."""
    TerminalSession.objects.filter(pk=session_id).exclude(status=TerminalStatus.CLOSED).update(
        status=TerminalStatus.CLOSED, closed_at=timezone.now(), close_reason=reason[:255]
    )


@transaction.atomic
def terminal_fail(*, command_id: uuid.UUID, reason: str) -> str | None:
    """The agent could not open the session of `command_id`: close it if it still waits for
    the agent and return the browser's channel (None when there is nobody to tell). An OPEN
    session is the agent socket's to end: it sends its reason there before closing.)"""
    session = lock_opening_session_of_command(command_id)
    if session is None:
        return None
    session.status = TerminalStatus.CLOSED
    session.closed_at = timezone.now()
    session.close_reason = reason[:255]
    session.save(update_fields=["status", "closed_at", "close_reason"])
    return session.browser_channel


@dataclass(frozen=True)
class IssuedPodToken:
    token: PodAccessToken
    raw: str  # shown to the owner once, never stored


@transaction.atomic
def pod_token_create(*, user: User, pod_id: uuid.UUID, name: str) -> IssuedPodToken:
    """A new port-proxy token for one of the user's pods."""
    pod = Pod.objects.for_user(user).filter(pk=pod_id).first()
    if pod is None:
        raise PodNotFoundError(str(pod_id))
    issued = secret_issue(prefix=POD_TOKEN_PREFIX)
    token = PodAccessToken.objects.create(
        pod=pod, name=name, prefix=issued.display_prefix, digest=issued.digest
    )
    return IssuedPodToken(token=token, raw=issued.raw)


@transaction.atomic
def pod_token_revoke(*, user: User, pod_id: uuid.UUID, token_id: int) -> PodAccessToken:
    """Revoke a token of one of the user's pods (revoking twice changes nothing)."""
    token = lock_pod_token(user=user, pod_id=pod_id, token_id=token_id)
    if token is None:
        raise PodNotFoundError(f"token {token_id}")
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        digest = token.digest
        # This process stops honouring it at once; the others within the cache time.
        transaction.on_commit(lambda: access.forget_token(digest))
    return token
