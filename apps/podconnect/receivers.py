"""The podconnect app listens to the nodes app: an OPEN_TERMINAL the agent could not carry out
ends the waiting browser's session at once, with the agent's reason."""

from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.dispatch import receiver

from apps.nodes import signals
from apps.nodes.models import CommandStatus, CommandType
from apps.podconnect import services


@receiver(signals.command_finished)
def _command_finished(sender: Any, command: Any, **kwargs: Any) -> None:
    if command.type != CommandType.OPEN_TERMINAL or command.status != CommandStatus.FAILED:
        return
    reason = f"The node could not open a shell: {command.error or 'no reason given'}"
    channel = services.terminal_fail(command_id=command.pk, reason=reason)
    layer = get_channel_layer()
    if channel and layer is not None:
        async_to_sync(layer.send)(channel, {"type": "terminal.closed", "reason": reason[:255]})
