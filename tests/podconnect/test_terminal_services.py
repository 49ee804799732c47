"""Terminal sessions: who may open one, and which agent socket may join it."""

from datetime import timedelta

import pytest

from apps.nodes.models import CommandType, NodeCommand, NodeStatus
from apps.podconnect import services
from apps.podconnect.models import TerminalSession, TerminalStatus
from apps.pods.models import PodEvent, PodStatus
from tests.factories import make_pod, node_with_token

pytestmark = pytest.mark.django_db


def test_open_queues_a_command_with_a_one_time_token_and_records_an_event(user, node_and_token):
    node, _ = node_and_token
    pod = make_pod(user, node)

    session = services.terminal_open(user=user, pod_id=pod.pk, browser_channel="c1")

    command = NodeCommand.objects.get(pk=session.command_id)
    assert command.type == CommandType.OPEN_TERMINAL and command.node == node
    assert command.payload["session_id"] == str(session.pk)
    assert command.payload["token"].startswith("tt_")
    assert command.payload["token"] not in session.token_digest  # only its hash is kept
    event = PodEvent.objects.get(pod=pod)
    assert event.from_status == event.to_status == PodStatus.RUNNING
    assert user.email in event.reason


def test_another_users_pod_is_not_found_and_changes_nothing(user, other_user, node_and_token):
    node, _ = node_and_token
    pod = make_pod(user, node)

    with pytest.raises(services.PodNotFoundError):
        services.terminal_open(user=other_user, pod_id=pod.pk, browser_channel="c1")

    assert not TerminalSession.objects.exists() and not NodeCommand.objects.exists()


@pytest.mark.parametrize("status", [PodStatus.PENDING, PodStatus.STOPPED, PodStatus.STARTING])
def test_a_pod_that_is_not_running_is_refused_with_its_status(user, node_and_token, status):
    node, _ = node_and_token
    pod = make_pod(user, node, status=status)

    with pytest.raises(services.TerminalRefusedError, match=status.lower()):
        services.terminal_open(user=user, pod_id=pod.pk, browser_channel="c1")
    assert not NodeCommand.objects.exists()


def test_an_offline_node_is_refused(user, node_and_token):
    node, _ = node_and_token
    node.__class__.objects.filter(pk=node.pk).update(status=NodeStatus.OFFLINE)
    pod = make_pod(user, node)

    with pytest.raises(services.TerminalRefusedError, match="offline"):
        services.terminal_open(user=user, pod_id=pod.pk, browser_channel="c1")


def _opened(user, node):
    pod = make_pod(user, node)
    session = services.terminal_open(user=user, pod_id=pod.pk, browser_channel="c1")
    token = NodeCommand.objects.get(pk=session.command_id).payload["token"]
    return session, token


def test_the_agent_joins_once_with_both_tokens_and_the_token_is_wiped(user, node_and_token):
    node, node_token = node_and_token
    session, token = _opened(user, node)

    joined = services.terminal_attach(
        session_id=session.pk, node_token=node_token, terminal_token=token
    )

    assert joined.status == TerminalStatus.OPEN and joined.connected_at is not None
    assert NodeCommand.objects.get(pk=session.command_id).payload["token"] == ""
    with pytest.raises(services.TerminalAttachRefusedError, match="open"):
        services.terminal_attach(session_id=session.pk, node_token=node_token, terminal_token=token)


def test_wrong_tokens_another_node_and_expired_sessions_are_refused(user, node_and_token, settings):
    node, node_token = node_and_token
    _, other_node_token = node_with_token("another-node")
    session, token = _opened(user, node)

    with pytest.raises(services.TerminalAttachRefusedError, match="terminal token"):
        services.terminal_attach(
            session_id=session.pk, node_token=node_token, terminal_token="tt_guess"
        )
    with pytest.raises(services.TerminalAttachRefusedError, match="node token"):
        services.terminal_attach(
            session_id=session.pk, node_token=other_node_token, terminal_token=token
        )
    TerminalSession.objects.filter(pk=session.pk).update(
        created_at=session.created_at - timedelta(seconds=settings.POD_TERMINAL_OPEN_TIMEOUT_S + 1)
    )
    with pytest.raises(services.TerminalAttachRefusedError, match="expired"):
        services.terminal_attach(session_id=session.pk, node_token=node_token, terminal_token=token)
    assert TerminalSession.objects.get(pk=session.pk).status == TerminalStatus.OPENING


def test_a_failed_open_closes_only_a_waiting_session(user, node_and_token):
    node, node_token = node_and_token
    waiting, _ = _opened(user, node)
    joined, token = _opened(user, node)
    services.terminal_attach(session_id=joined.pk, node_token=node_token, terminal_token=token)

    assert services.terminal_fail(command_id=waiting.command_id, reason="no shell") == "c1"
    assert services.terminal_fail(command_id=joined.command_id, reason="late replay") is None

    assert TerminalSession.objects.get(pk=waiting.pk).close_reason == "no shell"
    assert TerminalSession.objects.get(pk=joined.pk).status == TerminalStatus.OPEN
