"""Row locks of podconnect. Each is taken alone (never with another of these), after the pod's
lock when both are needed (apps.pods.locks)."""

import uuid

from apps.accounts.models import User
from apps.podconnect.models import PodAccessToken, TerminalSession, TerminalStatus


def lock_terminal_session(session_id: uuid.UUID | str) -> TerminalSession | None:
    # Two sockets presenting the same one-time token race for one session; one wins.
    return (
        TerminalSession.objects.select_for_update()
        .select_related("node")
        .filter(pk=session_id)
        .first()
    )


def lock_opening_session_of_command(command_id: uuid.UUID | str) -> TerminalSession | None:
    # The agent's failure report and its late attach must not both settle the session.
    return (
        TerminalSession.objects.select_for_update()
        .filter(command_id=command_id, status=TerminalStatus.OPENING)
        .first()
    )


def lock_pod_token(*, user: User, pod_id: uuid.UUID, token_id: int) -> PodAccessToken | None:
    # Two revocations of one token must not both stamp it (the first revocation time stays).
    return (
        PodAccessToken.objects.select_for_update()
        .filter(pk=token_id, pod_id=pod_id, pod__owner=user)
        .first()
    )
