"""Commands to a node's agent: queued here, delivered with its heartbeats
(`apps.nodes.heartbeats`), acknowledged once with their result."""

import uuid
from typing import Any

from django.db import transaction
from django.utils import timezone

from apps.core.request_context import with_request_id
from apps.nodes import signals
from apps.nodes.locks import lock_command
from apps.nodes.models import CommandStatus, CommandType, Node, NodeCommand, Workload


class CommandNotFoundError(Exception):
    pass


@transaction.atomic(savepoint=False)
def command_enqueue(*, node: Node, type: str, payload: dict[str, Any]) -> NodeCommand:
    return NodeCommand.objects.create(node=node, type=type, payload=with_request_id(payload))


@transaction.atomic
def command_ack(
    *, node: Node, command_id: uuid.UUID, succeeded: bool, result: dict[str, Any], error: str
) -> NodeCommand:
    """Apply an agent's result for a command once; a replayed ack changes nothing."""
    command = lock_command(node=node, command_id=command_id)
    if command is None:
        raise CommandNotFoundError(str(command_id))
    if command.is_final:
        return command
    command.status = CommandStatus.ACKED if succeeded else CommandStatus.FAILED
    command.result = result
    command.error = error
    command.acked_at = timezone.now()
    command.save(update_fields=["status", "result", "error", "acked_at"])

    pod_id = command.payload.get("pod_id")
    if pod_id and command.type in (CommandType.START_POD, CommandType.STOP_POD):
        workload = Workload.objects.filter(node=node, pod_id=pod_id).first()
        if workload is not None:
            previous = workload.state
            if command.type == CommandType.START_POD:
                workload.container_id = result.get("container_id") or workload.container_id
                workload.state = result.get("state") or ("failed" if not succeeded else "created")
            else:
                workload.state = "removed" if succeeded else workload.state
                workload.exit_code = result.get("exit_code", workload.exit_code)
            workload.error = error
            workload.observed_at = command.acked_at
            workload.save(
                update_fields=["container_id", "state", "exit_code", "error", "observed_at"]
            )
            if workload.state != previous:
                transaction.on_commit(lambda: signals.announce_observed([(workload, previous)]))
    transaction.on_commit(
        lambda: signals.command_finished.send(sender=NodeCommand, command=command)
    )
    return command
